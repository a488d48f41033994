"""The provider's billing report pages, stored as fetched: ``provider_reports``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

One row per page of Anthropic's usage or cost report (``tokenmeter reconcile fetch`` or
``import``): its fetch time, which report, the span of its buckets and the page's JSON. Rows are
only ever added (a later fetch adds a newer snapshot); ``tokenmeter report reconcile`` reads the
newest per report and day. Nothing to backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_reports",
        sa.Column("page_id", sa.String(length=32), nullable=False),
        sa.Column("snapshot_id", sa.String(length=32), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("page_id", name="pk_provider_reports"),
    )
    op.create_index(
        "ix_provider_reports_provider_starts_at", "provider_reports", ["provider", "starts_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_provider_reports_provider_starts_at", table_name="provider_reports")
    op.drop_table("provider_reports")
