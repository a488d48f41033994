"""Daily rollup ``usage_daily``, backfilled from ``usage_hourly``; drop the unused session index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

``usage_daily`` holds the same sums as ``usage_hourly`` per UTC day (``day`` = midnight UTC), so
a report over a month reads ~30 rows per key instead of ~720. Upgrade creates it and fills it
from the hourly rollup (not from raw events: hours whose raw events retention purged are only in
the hourly rollup). ``ix_usage_events_session`` goes: no query filters by session, and every
index costs the insert path per event. On PostgreSQL both rollups get fillfactor 50 (every
batch updates the current hour's and day's rows; room on the page keeps that in place).
Self-contained, like 0001.
"""

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = ("provider", "model", "user", "team")
COUNTS = (
    "requests",
    "errors",
    "unpriced_requests",
    "input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "output_tokens",
    "reasoning_tokens",
    "web_search_requests",
)
COSTS = (
    "cost_usd",
    "sticker_usd",
    "cost_input_usd",
    "cost_cache_write_5m_usd",
    "cost_cache_write_1h_usd",
    "cost_cache_read_usd",
    "cost_output_usd",
    "cost_web_search_usd",
)


# Rollup rows are updated by every batch; half-empty pages keep those updates in place (HOT).
FILLFACTOR = 50


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _money() -> sa.Numeric[Decimal]:
    return sa.Numeric(20, 10)


def _create_daily() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.String(), nullable=False) for name in KEYS),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        *(sa.Column(name, _money(), nullable=False) for name in COSTS),
        sa.PrimaryKeyConstraint("day", *KEYS, name="pk_usage_daily"),
        postgresql_with={"fillfactor": FILLFACTOR},
    )


def _day_of_hour() -> str:
    if _is_postgresql():
        return "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # SQLite stores the UTC time as text 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return "substr(hour, 1, 10) || ' 00:00:00.000000'"


def _backfill() -> None:
    keys = ", ".join(f'"{name}"' for name in KEYS)
    sums = ", ".join(f'sum("{name}")' for name in (*COUNTS, *COSTS))
    names = ", ".join(f'"{name}"' for name in ("day", *KEYS, *COUNTS, *COSTS))
    day = _day_of_hour()
    op.execute(
        f"INSERT INTO usage_daily ({names})"  # noqa: S608  (schema names only)
        f" SELECT {day}, {keys}, {sums} FROM usage_hourly GROUP BY {day}, {keys}"
    )


def upgrade() -> None:
    _create_daily()
    _backfill()
    op.drop_index("ix_usage_events_session", table_name="usage_events")
    if _is_postgresql():
        op.execute(f"ALTER TABLE usage_hourly SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if _is_postgresql():
        op.execute("ALTER TABLE usage_hourly RESET (fillfactor)")
    op.create_index("ix_usage_events_session", "usage_events", ["session"])
    op.drop_table("usage_daily")
