"""Message Batches created through the proxy, so their results are billed to their creator.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

Self-contained (plain SQLAlchemy types), as 0001 is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
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



def downgrade() -> None:
    op.drop_table("message_batches")
