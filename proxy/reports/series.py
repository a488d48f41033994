"""Totals over time: per UTC day and one more key (model, team), and one task's hours.

``over_time`` reads what ``usage`` reads (whole hours from the rollups, edge hours from raw
events, ``window_source``), grouped by the day and ``by``: the dashboard's stacked spend and its
ratio and cache-hit lines add up to ``usage``'s totals for the same filters. ``task_hours`` is one
task's requests per UTC hour from raw events, as every per-task answer is read.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import ReportError, Totals, add, sum_columns, totals_of
from proxy.reports.usage import Filters, key_text, resolve, window_source
from proxy.store.aggregates import DAY_LABEL_SQL, HOUR_SQL, bucket
from proxy.store.tables import usage_events

SERIES_GROUPS = ("model", "team", "user", "provider")
Point = tuple[str, str, Totals]  # (UTC day YYYY-MM-DD, key, totals)


async def over_time(engine: AsyncEngine, by: str, filters: Filters) -> list[Point]:
    """Totals per UTC day and ``by`` over ``resolve(filters)``, by day then key."""
    if by not in SERIES_GROUPS:
        raise ReportError(f"by must be one of {', '.join(SERIES_GROUPS)}; got {by!r}")
    filters = await resolve(engine, filters)
    table = window_source(filters, engine.dialect.name)
    day: Any = sa.literal_column(bucket(DAY_LABEL_SQL, engine.dialect.name, "hour"))
    key = table.c[by]
    query = (
        sa.select(day.label("day"), key.label("key"), *sum_columns(table))
        .group_by(day, key)
        .order_by(day, key)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(str(row[0]), key_text(row[1]), totals_of(row, 2)) for row in rows]


def per_day(points: list[Point]) -> list[tuple[str, Totals]]:
    """``over_time``'s points summed per day: ``usage(engine, "day", filters)``'s answer."""
    days: dict[str, Totals] = {}
    for day, _, totals in points:
        add(days.setdefault(day, Totals()), totals)
    return sorted(days.items())


async def task_hours(engine: AsyncEngine, task_id: str) -> list[tuple[str, Totals]]:
    """One task's totals per UTC hour (ISO 8601 start of the hour), oldest first."""
    hour: Any = sa.literal_column(bucket(HOUR_SQL, engine.dialect.name, "ts"))
    query = (
        sa.select(hour.label("hour"), *sum_columns(usage_events))
        .where(usage_events.c.task == task_id)
        .group_by(hour)
        .order_by(hour)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(_hour_text(row[0]), totals_of(row, 1)) for row in rows]


def _hour_text(value: Any) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text[:13].replace(" ", "T") + ":00"
