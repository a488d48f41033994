"""Message Batches created through the proxy, so their results are billed to their creator;
where agent sessions ran (``session_context``: working directory and git branch, from backfill).

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-27

Self-contained (plain SQLAlchemy types), as 0001 is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHO = ("user", "team", "task", "session", "agent", "key_fingerprint")


def upgrade() -> None:
    op.create_table(
        "message_batches",
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("request_count", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.String(), nullable=True) for name in WHO),
        sa.Column("attribution_source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_message_batches")),
    )


    op.create_table(
        "session_context",
        sa.Column("session", sa.String(), nullable=False),
        sa.Column("cwd", sa.String(), nullable=False),
        sa.Column("git_branch", sa.String(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responses", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("session", "cwd", "git_branch", name=op.f("pk_session_context")),
    )


def downgrade() -> None:
    op.drop_table("session_context")
    op.drop_table("message_batches")
