"""Subscription seats: how each event is billed, its API-equivalent dollars, and seat prices.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

``usage_events`` gains ``billing`` (``api_key``, ``subscription``, ``unknown``: how upstream
bills the request, from its credentials) and ``api_equivalent_usd`` (a subscription event's list
price; its ``cost_usd`` is the $0 paid per token). ``usage_hourly`` and ``usage_daily`` gain the
sums ``api_equivalent_usd``, ``api_equivalent_requests`` and ``api_equivalent_tokens``. The new
table ``seats`` holds each seat holder's plan and price per month.

Existing events keep NULL ``billing`` (recorded before it was classified) and NULL
``api_equivalent_usd`` (they were priced as paid traffic); the new rollup sums start at 0,
which is exact for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUPS = ("usage_hourly", "usage_daily")
COUNTS = ("api_equivalent_requests", "api_equivalent_tokens")


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("billing", sa.String(), nullable=True))
        batch.add_column(sa.Column("api_equivalent_usd", sa.Numeric(20, 10), nullable=True))
    for table in ROLLUPS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "api_equivalent_usd", sa.Numeric(20, 10), nullable=False, server_default="0"
                )
            )
            for name in COUNTS:
                batch.add_column(
                    sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
                )
    op.create_table(
        "seats",
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("plan", sa.String(), nullable=True),
        sa.Column("usd_per_month", sa.Numeric(20, 10), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user", name="pk_seats"),
    )


def downgrade() -> None:
    op.drop_table("seats")
    for table in ROLLUPS:
        with op.batch_alter_table(table) as batch:
            for name in (*COUNTS, "api_equivalent_usd"):
                batch.drop_column(name)
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("api_equivalent_usd")
        batch.drop_column("billing")
