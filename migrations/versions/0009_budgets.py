"""Budgets and their per-period spend counters.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27

``budgets``: one row per (scope, name, period) (name '' for the org): the amount in USD,
hard or soft, the alert thresholds (comma-separated percentages). ``budget_counters``: each
budget's priced spend per period (``period_start``, UTC), added to in the same transaction as
the usage rows it counts, and ``reserved_usd``, the sum of its ``budget_holds``: the leases each
replica (``holder``) takes of a hard budget so it can admit requests without a round trip while
the replicas together never pass the cap by more than one request. ``budget_alerts``: one row per threshold crossed per period, the
webhook's once-across-replicas claim. All start empty. Self-contained, like 0001.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key() -> list[sa.Column[str]]:
    return [
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "budgets",
        *_key(),
        sa.Column("amount_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("hard", sa.Boolean(), nullable=False),
        sa.Column("alerts", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", "period", name="pk_budgets"),
    )
    op.create_table(
        "budget_counters",
        *_key(),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("reserved_usd", sa.Numeric(20, 10), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint(
            "scope", "name", "period", "period_start", name="pk_budget_counters"
        ),
    )
    op.create_table(
        "budget_holds",
        sa.Column("holder", sa.String(32), nullable=False),
        *_key(),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "holder", "scope", "name", "period", "period_start", name="pk_budget_holds"
        ),
    )


    op.create_table(
        "budget_alerts",
        *_key(),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "name", "period", "period_start", "threshold", name="pk_budget_alerts"
        ),
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
    op.drop_table("budget_holds")
    op.drop_table("budget_counters")
    op.drop_table("budgets")
