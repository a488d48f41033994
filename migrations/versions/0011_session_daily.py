"""Session rollup ``session_daily``, backfilled from raw events.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27

The usage rollups' sums per UTC day and session key: the event's session ('' for none)
whatever its task, provider, model, user and team; plus the first and last event time of the
row. Work-unit reports (``usage --by repo|branch|pr|ticket``) join ``session`` to
``session_context``, so they read a month in one row per session and model instead of every raw
event. Upgrade fills it from ``usage_events`` (hours retention purged were never in any
work-unit report, which read raw events). Self-contained, like 0001.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("session", "provider", "model", "user", "team")
COUNTS = (
    "requests",
    "errors",
    "unpriced_requests",
    "unpriced_tokens",
    "api_equivalent_requests",
    "api_equivalent_tokens",
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
    "api_equivalent_usd",
)
TOKENS = '"input_tokens" + "cache_write_5m_tokens" + "cache_write_1h_tokens" + "cache_read_tokens" + "output_tokens"'  # noqa: E501
# How each sum is computed from raw events (as ``proxy.store.aggregates.SUMS`` at 0011).
SUMS = {
    "requests": "count(*)",
    "errors": "coalesce(sum(CASE WHEN \"status\" <> 'ok' THEN 1 ELSE 0 END), 0)",
    "unpriced_requests": 'coalesce(sum(CASE WHEN "cost_usd" IS NULL THEN 1 ELSE 0 END), 0)',
    "unpriced_tokens": f'coalesce(sum(CASE WHEN "cost_usd" IS NULL THEN {TOKENS} ELSE 0 END), 0)',
    "api_equivalent_requests": (
        'coalesce(sum(CASE WHEN "api_equivalent_usd" IS NOT NULL THEN 1 ELSE 0 END), 0)'
    ),
    "api_equivalent_tokens": (
        f'coalesce(sum(CASE WHEN "api_equivalent_usd" IS NOT NULL THEN {TOKENS} ELSE 0 END), 0)'
    ),
    **{name: f'coalesce(sum("{name}"), 0)' for name in (*COUNTS[6:], *COSTS)},
}
FILLFACTOR = 50
DAY = {
    "postgresql": "date_trunc('day', \"ts\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "substr(\"ts\", 1, 10) || ' 00:00:00.000000'",
}


def _names(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def upgrade() -> None:
    op.create_table(
        "session_daily",
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(key, sa.String(), nullable=False) for key in KEY),
        *(sa.Column(count, sa.BigInteger(), nullable=False) for count in COUNTS),
        *(sa.Column(cost, sa.Numeric(20, 10), nullable=False) for cost in COSTS),
        sa.Column("first_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", *KEY, name="pk_session_daily"),
        postgresql_with={"fillfactor": FILLFACTOR},
    )
    keys = [
        DAY[op.get_bind().dialect.name],
        "coalesce(\"session\", '')",
        '"provider"',
        *(f"coalesce(\"{name}\", '')" for name in KEY[2:]),
    ]
    columns = ("day", *KEY, *COUNTS, *COSTS, "first_ts", "last_ts")
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    sums = ", ".join(SUMS[name] for name in (*COUNTS, *COSTS))
    op.execute(
        f"INSERT INTO session_daily ({_names(columns)})"  # noqa: S608  (schema names only)
        f" SELECT {', '.join(keys)}, {sums}, min(\"ts\"), max(\"ts\") FROM usage_events"
        f" GROUP BY {by}"
    )


def downgrade() -> None:
    op.drop_table("session_daily")
