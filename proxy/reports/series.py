"""Totals over time: per UTC day and some keys (model and team), and one task's hours.

``over_time`` reads what ``usage`` reads (whole hours from the rollups, edge hours from raw
events, ``window_source``), grouped by the day and ``by``: the dashboard's stacked spend and its
ratio and cache-hit lines add up to ``usage``'s totals for the same filters. ``task_hours`` is one
task's requests per UTC hour from its raw events (``task_source.one_task``: the events
``tasks.task_view`` counts, its ticket's sessions included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.task_source import one_task
from proxy.reports.totals import ReportError, Totals, add, sum_columns, totals_of
from proxy.reports.usage import key_text, resolve, window_source
from proxy.reports.window import WITH_CONTEXT, Filters
from proxy.store.aggregates import DAY_LABEL_SQL, HOUR_SQL, bucket
from proxy.store.tables import usage_events

SERIES_GROUPS = ("model", "team", "user", "provider")
Point = tuple[str, tuple[str, ...], Totals]  # (UTC day YYYY-MM-DD, keys in ``by`` order, totals)


async def over_time(engine: AsyncEngine, by: Sequence[str], filters: Filters) -> list[Point]:
    """Totals per UTC day and each combination of ``by`` (e.g. model and team: one read for
    both charts) over ``resolve(filters)``, by day then keys."""
    unknown = [name for name in by if name not in SERIES_GROUPS]
    if unknown or not by:
        raise ReportError(f"by must name some of {', '.join(SERIES_GROUPS)}; got {list(by)!r}")
    filters = await resolve(engine, filters)
    table = window_source(filters, engine.dialect.name)
    day: Any = sa.literal_column(bucket(DAY_LABEL_SQL, engine.dialect.name, "hour"))
    keys = [table.c[name] for name in by]
    query = (
        sa.select(day.label("day"), *keys, *sum_columns(table))
        .group_by(day, *keys)
        .order_by(day, *keys)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    width = len(keys) + 1
    return [
        (str(row[0]), tuple(key_text(value) for value in row[1:width]), totals_of(row, width))
        for row in rows
    ]


def by_key(points: list[Point], index: int) -> list[tuple[str, str, Totals]]:
    """``points`` summed per day and their ``index``-th key: (day, key, totals)."""
    sums: dict[tuple[str, str], Totals] = {}
    for day, keys, totals in points:
        add(sums.setdefault((day, keys[index]), Totals()), totals)
    return [(day, key, totals) for (day, key), totals in sorted(sums.items())]


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
        .select_from(WITH_CONTEXT)
        .where(await one_task(engine, task_id))
        .group_by(hour)
        .order_by(hour)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(_hour_text(row[0]), totals_of(row, 1)) for row in rows]


def _hour_text(value: Any) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text[:13].replace(" ", "T") + ":00"
