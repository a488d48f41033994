"""Totals per user, team, model, provider, task, session or day over a time range.

Grouped by task or session the answer comes from raw events (those keys are not in the rollup);
every other grouping reads the hourly rollup, so a range starts at the hour ``start`` falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import ReportError, Totals, sum_columns, sum_totals, totals_of
from proxy.store.tables import usage_events, usage_hourly

GROUPS = ("user", "team", "model", "provider", "task", "session", "day")
NONE_KEY = "(none)"
_RAW_GROUPS = {"task", "session"}


@dataclass(slots=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None
    team: str | None = None
    model: str | None = None


async def usage(engine: AsyncEngine, group_by: str, filters: Filters) -> list[tuple[str, Totals]]:
    """Totals per group over a time range; rollup unless grouping by task or session."""
    if group_by not in GROUPS:
        raise ReportError(f"group_by must be one of {', '.join(GROUPS)}; got {group_by!r}")
    table = usage_events if group_by in _RAW_GROUPS else usage_hourly
    key = _group_key(table, group_by, engine)
    query = sa.select(key.label("key"), *sum_columns(table)).group_by(key).order_by(key)
    query = query.where(*conditions(table, filters))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(_key_text(row[0]), totals_of(row, 1)) for row in rows]


def total_of(rows: list[tuple[str, Totals]]) -> Totals:
    return sum_totals([part for _, part in rows])


def _group_key(table: sa.Table, group_by: str, engine: AsyncEngine) -> sa.ColumnElement[Any]:
    if group_by == "day":
        column = table.c.ts if table is usage_events else table.c.hour
        if engine.dialect.name == "sqlite":
            return sa.func.substr(column, 1, 10)
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return table.c[group_by]


def conditions(table: sa.Table, f: Filters) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for ``f`` on raw events or the rollup."""
    c = table.c
    time_col = c.ts if table is usage_events else c.hour
    where: list[sa.ColumnElement[bool]] = []
    if f.start is not None:
        where.append(time_col >= _hour_floor(f.start, table))
    if f.end is not None:
        where.append(time_col < f.end)
    for name in ("user", "team", "model"):
        value = getattr(f, name)
        if value is not None:
            where.append(c[name] == value)
    return where


def _hour_floor(moment: datetime, table: sa.Table) -> datetime:
    if table is usage_events:
        return moment
    return moment.replace(minute=0, second=0, microsecond=0)


def _key_text(value: Any) -> str:
    if value is None or value == "":
        return NONE_KEY
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)
