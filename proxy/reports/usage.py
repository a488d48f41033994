"""Totals per user, team, model, provider, task, session, key or day over a time range.

Grouped by task, session or key (the salted fingerprint of the caller's API key) the answer
comes from raw events (those keys are not in the rollup); every other grouping reads the
rollups: the hours from the one ``start`` falls in up to ``end`` (the same hours
``usage_hourly`` alone would give), of which every whole UTC day comes from ``usage_daily`` and
only the partial edge hours from ``usage_hourly`` (``rollup_source``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import ReportError, Totals, sum_columns, sum_totals, totals_of
from proxy.store.tables import ROLLUP_KEY, ROLLUP_SUMS, usage_daily, usage_events, usage_hourly

GROUPS = ("user", "team", "model", "provider", "task", "session", "key", "day")
NONE_KEY = "(none)"
_RAW_GROUPS = {"task", "session", "key"}
_COLUMNS = {"key": "key_fingerprint"}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
Bound = datetime | None
Range = tuple[Bound, Bound]


@dataclass(slots=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None
    team: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ReportError(f"start {self.start.isoformat()} is after end {self.end.isoformat()}")


async def usage(engine: AsyncEngine, group_by: str, filters: Filters) -> list[tuple[str, Totals]]:
    """Totals per group over a time range; rollup unless grouping by task or session."""
    if group_by not in GROUPS:
        raise ReportError(f"group_by must be one of {', '.join(GROUPS)}; got {group_by!r}")
    if group_by in _RAW_GROUPS:
        table: sa.FromClause = usage_events
        where = conditions(usage_events, filters)
    else:
        table, where = rollup_source(filters), []
    key = _group_key(table, group_by, engine)
    query = sa.select(key.label("key"), *sum_columns(table)).group_by(key).order_by(key)
    query = query.where(*where)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(_key_text(row[0]), totals_of(row, 1)) for row in rows]


def total_of(rows: list[tuple[str, Totals]]) -> Totals:
    return sum_totals([part for _, part in rows])


def rollup_source(f: Filters) -> sa.Subquery:
    """The rollup rows (``usage_hourly``'s columns) that make up ``f``: whole UTC days from
    ``usage_daily``, the edge hours from ``usage_hourly``, filtered by user, team and model."""
    first, stop = _hour_floor_of(f.start), _hour_ceil_of(f.end)
    days, hours = split_range(first, stop)
    parts: list[sa.Select[Any]] = []
    if days is not None:
        parts.append(_daily_part(days, f))
    if hours:
        parts.append(_hourly_part(hours, f))
    return sa.union_all(*parts).subquery("rollup")


def split_range(first: Bound, stop: Bound) -> tuple[Range | None, list[Range]]:
    """Hours ``[first, stop)`` (None: unbounded) as whole days ``[lo, hi)`` (None when there is
    no whole day) plus the hour ranges left at either edge."""
    lo = None if first is None else _day_ceil(first)
    hi = None if stop is None else _day_floor(stop)
    if lo is not None and hi is not None and lo >= hi:
        return None, [(first, stop)]
    edges: list[Range] = []
    if first is not None and lo is not None and first < lo:
        edges.append((first, lo))
    if stop is not None and hi is not None and hi < stop:
        edges.append((hi, stop))
    return (lo, hi), edges


def _daily_part(days: Range, f: Filters) -> sa.Select[Any]:
    c = usage_daily.c
    where = _between(c.day, *days) + _who(usage_daily, f)
    return sa.select(c.day.label("hour"), *(c[n] for n in (*ROLLUP_KEY[1:], *ROLLUP_SUMS))).where(
        *where
    )


def _hourly_part(hours: list[Range], f: Filters) -> sa.Select[Any]:
    c = usage_hourly.c
    ranges = [sa.and_(sa.true(), *_between(c.hour, lo, hi)) for lo, hi in hours]
    return sa.select(*(c[n] for n in (*ROLLUP_KEY, *ROLLUP_SUMS))).where(
        sa.or_(*ranges), *_who(usage_hourly, f)
    )


def _between(column: sa.ColumnElement[Any], lo: Bound, hi: Bound) -> list[sa.ColumnElement[bool]]:
    where = [] if lo is None else [column >= lo]
    return where if hi is None else [*where, column < hi]


def _who(table: sa.Table, f: Filters) -> list[sa.ColumnElement[bool]]:
    values = {name: getattr(f, name) for name in ("user", "team", "model")}
    return [table.c[name] == value for name, value in values.items() if value is not None]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hour_floor_of(moment: Bound) -> Bound:
    return None if moment is None else _utc(moment).replace(minute=0, second=0, microsecond=0)


def _hour_ceil_of(moment: Bound) -> Bound:
    """The first hour boundary at or after ``moment``: an hour starts before ``moment`` exactly
    when it starts before this."""
    if moment is None:
        return None
    utc = _utc(moment)
    floor = utc.replace(minute=0, second=0, microsecond=0)
    return floor if floor == utc else floor + HOUR


def _day_floor(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(moment: datetime) -> datetime:
    floor = _day_floor(moment)
    return floor if floor == moment else floor + DAY


def _group_key(table: sa.FromClause, group_by: str, engine: AsyncEngine) -> sa.ColumnElement[Any]:
    if group_by == "day":
        column = table.c.ts if table is usage_events else table.c.hour
        if engine.dialect.name == "sqlite":
            return sa.func.substr(column, 1, 10)
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return table.c[_COLUMNS.get(group_by, group_by)]


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
