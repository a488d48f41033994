"""Proxy-issued keys and their audit trail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

``api_keys``: one row per tokenmeter key (``tmk_<public id>_<secret>``): the SHA-256 of the key
and its last 4 characters (never the key), owner and team, created/expiry/revoked/rotated/last
use times, and the hash of the secret before the last rotation with the end of its grace window.
``api_key_audit``: every create, rotate and revoke (who, when, what changed as JSON).
Self-contained (plain SQLAlchemy types), like 0001.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None



def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("public_id", sa.String(12), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *(
            sa.Column(name, sa.DateTime(timezone=True), nullable=True)
            for name in ("expires_at", "revoked_at", "rotated_at")
        ),
        sa.Column("previous_sha256", sa.String(64), nullable=True),
        sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("public_id", name="pk_api_keys"),
    )
    op.create_table(
        "api_key_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(12), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_key_audit"),
    )
    op.create_index("ix_api_key_audit_public_id", "api_key_audit", ["public_id"])


def downgrade() -> None:
    op.drop_index("ix_api_key_audit_public_id", table_name="api_key_audit")
    op.drop_table("api_key_audit")
    op.drop_table("api_keys")
