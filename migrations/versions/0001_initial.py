"""Initial schema: usage_events, usage_hourly, people, tasks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Self-contained on purpose (plain SQLAlchemy types, no imports from ``proxy``), so it creates the
same schema forever. Money is NUMERIC(20, 10) on both databases; see proxy/store/types.py for
how SQLite keeps it exact.
"""

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKENS = (
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


def _money() -> sa.Numeric[Decimal]:
    return sa.Numeric(20, 10)


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _usage_events() -> None:
    op.create_table(
        "usage_events",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("ts", _time(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("upstream_headers_ms", sa.Float(), nullable=True),
        sa.Column("first_token_ms", sa.Float(), nullable=True),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("request_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("error_type", sa.String(), nullable=True),
        *(
            sa.Column(name, sa.String(), nullable=True)
            for name in ("user", "team", "task", "session", "agent", "key_fingerprint")
        ),
        sa.Column("attribution_source", sa.String(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in TOKENS),
        *(
            sa.Column(name, sa.String(), nullable=True)
            for name in ("service_tier", "inference_geo", "speed")
        ),
        *(sa.Column(name, _money(), nullable=True) for name in COSTS),
        sa.Column("price_version", sa.String(), nullable=True),
        sa.Column("catalog_model", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_usage_events"),
    )
    op.create_index("ix_usage_events_ts", "usage_events", ["ts"])
    op.create_index("ix_usage_events_task", "usage_events", ["task"])
    op.create_index("ix_usage_events_session", "usage_events", ["session"])
    op.create_index("ix_usage_events_user_ts", "usage_events", ["user", "ts"])


def _usage_hourly() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("hour", _time(), nullable=False),
        *(
            sa.Column(name, sa.String(), nullable=False)
            for name in ("provider", "model", "user", "team")
        ),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("requests", "errors", "unpriced_requests", *TOKENS)
        ),
        *(sa.Column(name, _money(), nullable=False) for name in COSTS),
        sa.PrimaryKeyConstraint(
            "hour", "provider", "model", "user", "team", name="pk_usage_hourly"
        ),
    )


def _people_and_tasks() -> None:
    op.create_table(
        "people",
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("annual_compensation", _money(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.PrimaryKeyConstraint("user", "effective_from", name="pk_people"),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=True),
        sa.Column("human_hours", _money(), nullable=True),
        sa.Column("hourly_rate_usd", _money(), nullable=True),
        sa.Column("value_usd", _money(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
    )


def upgrade() -> None:
    _usage_events()
    _usage_hourly()
    _people_and_tasks()


def downgrade() -> None:
    op.drop_table("tasks")
    op.drop_table("people")
    op.drop_table("usage_hourly")
    op.drop_index("ix_usage_events_user_ts", table_name="usage_events")
    op.drop_index("ix_usage_events_session", table_name="usage_events")
    op.drop_index("ix_usage_events_task", table_name="usage_events")
    op.drop_index("ix_usage_events_ts", table_name="usage_events")
    op.drop_table("usage_events")
