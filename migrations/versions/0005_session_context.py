"""Work context per session: ``session_context`` (repository, branch, working tree, PR, ticket).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

One row per session id, written by ``POST /api/v1/sessions/{id}/context`` (Claude Code's hooks
and status line through ``tokenmeter claude-code``); reports join it to ``usage_events`` by
``session`` at read time. A new table only: nothing to backfill. Self-contained, like 0001.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_context",
        sa.Column("session", sa.String(), nullable=False),
        *(
            sa.Column(name, sa.String(), nullable=True)
            for name in ("repo_host", "repo_owner", "repo_name", "branch", "worktree")
        ),
        sa.Column("pr", sa.Integer(), nullable=True),
        sa.Column("ticket", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session", name="pk_session_context"),
    )


def downgrade() -> None:
    op.drop_table("session_context")
