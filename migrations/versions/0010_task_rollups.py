"""Task rollups ``task_daily`` and ``task_monthly``, backfilled from raw events; an index on the
session of events that name no task.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27

Both hold the usage rollups' sums per UTC day (month) and task key: the event's own task
('' for none), its session when it named no task of its own (its task NULL or equal to its
session, attribution's default; else ''), provider, model, user and team; plus the first and
last event time of the row. Task reports join ``session`` to ``session_context`` for the ticket,
so the task page reads a month of tasks in a few thousand rows instead of every raw event.
Each has an index on ``task`` (the rows of the few tasks a list shows). Upgrade fills them from
``usage_events`` (hours retention purged were never in any task report,
which read raw events). ``ix_usage_events_untasked_session``: partial (``task IS NULL``), for
one task's events that its sessions' ticket gives it. Self-contained, like 0001.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("task", "session", "provider", "model", "user", "team")
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
# How each sum is computed from raw events (as ``proxy.store.aggregates.SUMS`` at 0010).
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
BUCKETS = {
    "postgresql": {
        "day": "date_trunc('day', {c} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "month": "date_trunc('month', {c} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    },
    "sqlite": {
        "day": "substr({c}, 1, 10) || ' 00:00:00.000000'",
        "month": "substr({c}, 1, 7) || '-01 00:00:00.000000'",
    },
}


def _create(name: str, time_key: str) -> None:
    op.create_table(
        name,
        sa.Column(time_key, sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(key, sa.String(), nullable=False) for key in KEY),
        *(sa.Column(count, sa.BigInteger(), nullable=False) for count in COUNTS),
        *(sa.Column(cost, sa.Numeric(20, 10), nullable=False) for cost in COSTS),
        sa.Column("first_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(time_key, *KEY, name=f"pk_{name}"),
        postgresql_with={"fillfactor": FILLFACTOR},
    )


def _names(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _backfill() -> None:
    buckets = BUCKETS[op.get_bind().dialect.name]
    inherited = '"task" IS NULL OR "task" = "session"'
    keys = [
        buckets["day"].format(c='"ts"'),
        "coalesce(\"task\", '')",
        f"CASE WHEN {inherited} THEN coalesce(\"session\", '') ELSE '' END",
        '"provider"',
        *(f"coalesce(\"{name}\", '')" for name in KEY[3:]),
    ]
    columns = ("day", *KEY, *COUNTS, *COSTS, "first_ts", "last_ts")
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    sums = ", ".join(SUMS[name] for name in (*COUNTS, *COSTS))
    op.execute(
        f"INSERT INTO task_daily ({_names(columns)})"  # noqa: S608  (schema names only)
        f" SELECT {', '.join(keys)}, {sums}, min(\"ts\"), max(\"ts\") FROM usage_events"
        f" GROUP BY {by}"
    )
    month = buckets["month"].format(c='"day"')
    summed = ", ".join(f'sum("{name}")' for name in (*COUNTS, *COSTS))
    op.execute(
        f"INSERT INTO task_monthly ({_names(('month', *columns[1:]))})"  # noqa: S608
        f" SELECT {month}, {_names(KEY)}, {summed}, min(\"first_ts\"), max(\"last_ts\")"
        f" FROM task_daily GROUP BY {month}, {_names(KEY)}"
    )


def upgrade() -> None:
    _create("task_daily", "day")
    _create("task_monthly", "month")
    _backfill()
    for table in ("task_daily", "task_monthly"):
        op.create_index(f"ix_{table}_task", table, ["task"])
    op.create_index(
        "ix_usage_events_untasked_session",
        "usage_events",
        ["session"],
        postgresql_where=sa.text("task IS NULL"),
        sqlite_where=sa.text("task IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_events_untasked_session", table_name="usage_events")
    for table in ("task_daily", "task_monthly"):
        op.drop_index(f"ix_{table}_task", table_name=table)
    op.drop_table("task_monthly")
    op.drop_table("task_daily")
