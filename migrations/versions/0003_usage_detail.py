"""Per-event stop reason, usage problems and iterations; unpriced tokens in both rollups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

``usage_events`` gains ``stop_reason`` (a refusal before output is recorded at $0 and must say
why), ``usage_problem`` (what the usage tap met: capped or negative counts, a missing usage
chunk …) and ``iterations`` (Anthropic's per-step usage as JSON, what ``reprice`` needs to
price compaction, advisor and fallback steps again). ``usage_hourly`` and ``usage_daily`` gain
``unpriced_tokens``: the five token kinds of events without a price, so blended $/MTok divides
priced dollars by priced tokens only.

Backfill of ``unpriced_tokens``: hourly rows with unpriced requests get the sum from their raw
events; a row whose raw events retention already purged gets all its tokens when all its
requests were unpriced (exact), and stays 0 when only some were (raw detail is gone: reports
over such old hours understate ``unpriced_tokens``). Daily rows are summed from hourly ones.
Existing events keep NULL in the new columns (priced as before: no stop reason, no iterations).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = (
    "input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "output_tokens",
)
KEYS = ("provider", "model", "user", "team")
ROLLUPS = ("usage_hourly", "usage_daily")


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _next(column: str, unit: str) -> str:
    """SQL for the start of the hour/day after the one ``column`` starts."""
    if _is_postgresql():
        return f"{column} + interval '1 {unit}'"
    # SQLite keeps UTC times as text 'YYYY-MM-DD HH:MM:SS.ffffff'; this sorts right against it.
    return f"strftime('%Y-%m-%d %H:%M:%S.000000', {column}, '+1 {unit}')"


def _same_key(outer: str, inner: str, coalesce: bool) -> str:
    def side(name: str) -> str:
        column = f'{inner}."{name}"'
        return f"coalesce({column}, '')" if coalesce and name != "provider" else column

    return " AND ".join(f'{side(name)} = {outer}."{name}"' for name in KEYS)


def _backfill() -> None:
    tokens = " + ".join(f"e.{name}" for name in KINDS)
    op.execute(
        "UPDATE usage_hourly SET unpriced_tokens = (SELECT coalesce(sum("  # noqa: S608
        f"{tokens}), 0) FROM usage_events e WHERE e.cost_usd IS NULL"
        f" AND e.ts >= usage_hourly.hour AND e.ts < {_next('usage_hourly.hour', 'hour')}"
        f" AND {_same_key('usage_hourly', 'e', coalesce=True)}) WHERE unpriced_requests > 0"
    )
    op.execute(
        f"UPDATE usage_hourly SET unpriced_tokens = {' + '.join(KINDS)}"  # noqa: S608
        " WHERE unpriced_tokens = 0 AND unpriced_requests > 0 AND unpriced_requests = requests"
    )
    op.execute(
        "UPDATE usage_daily SET unpriced_tokens = (SELECT coalesce(sum("  # noqa: S608
        "h.unpriced_tokens), 0) FROM usage_hourly h"
        f" WHERE h.hour >= usage_daily.day AND h.hour < {_next('usage_daily.day', 'day')}"
        f" AND {_same_key('usage_daily', 'h', coalesce=False)}) WHERE unpriced_requests > 0"
    )


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("stop_reason", sa.String(), nullable=True))
        batch.add_column(sa.Column("usage_problem", sa.String(), nullable=True))
        batch.add_column(sa.Column("iterations", sa.Text(), nullable=True))
    for table in ROLLUPS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("unpriced_tokens", sa.BigInteger(), nullable=False, server_default="0")
            )
    _backfill()


def downgrade() -> None:
    for table in ROLLUPS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("unpriced_tokens")
    with op.batch_alter_table("usage_events") as batch:
        for name in ("iterations", "usage_problem", "stop_reason"):
            batch.drop_column(name)
