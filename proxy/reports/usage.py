"""Totals per user, team, model, provider, task, session, key, billing, day, or work unit
(repository, branch, pull request, ticket) over a time window.

One window, one answer: every grouping and view counts exactly the events with
``start <= ts < end``. Grouped by session, key (the salted fingerprint of the caller's API key
or seat token) or billing (``proxy.billing``) the answer comes from raw events (those keys are
not in the rollup). Grouped by work unit it comes from the session rollup joined by session to
``session_context`` (``session_source``: whole days, raw events for partial days; ``work_key``);
events whose session has no such context are one row, ``unattributed``, never spread over the
rest. Grouped by task it comes from the task rollups
(``task_source``: whole months and days, raw events for partial days), an event with no task
header belonging to its session's ticket (``window.work_task``), as in every task report.
Every other grouping reads the whole UTC hours inside the window from the rollups (whole days from
``usage_daily``, the other whole hours from ``usage_hourly``, ``rollup_source``) and the partial
hours at either edge from raw events, summed the way a rollup row is (``rollup.hourly_sums``).
``resolve`` decides the window a report answers for: the one asked, except a start whose hour's
raw events retention already purged, which moves to the top of that hour (read whole from the
rollup); reports echo the resolved window.

``source`` narrows a report to events the proxy metered (``proxy``) or those read from Claude
Code's transcripts by ``tokenmeter backfill`` (``backfill``; ``None``: both). The rollups do not
keep the source apart, so such a report reads raw events for its whole window; over hours whose
raw events retention purged it has nothing to read and says so (``ReportError``) rather than
answering short.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.task_source import resolved_task, session_source, task_source, with_context
from proxy.reports.totals import ReportError, Totals, sum_columns, sum_totals, totals_of
from proxy.reports.window import (
    Bound,
    Filters,
    between,
    conditions,
    who,
)
from proxy.store.aggregates import (
    DAY_LABEL_SQL,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    bucket,
    day_of,
    hour_of,
)
from proxy.store.rollup import hourly_sums, purged_before
from proxy.store.tables import session_context, usage_daily, usage_events, usage_hourly
from proxy.usage import as_utc

WORK_GROUPS = ("repo", "branch", "pr", "ticket")
GROUPS = (
    "user",
    "team",
    "model",
    "provider",
    "task",
    "session",
    "key",
    "billing",
    "day",
    *WORK_GROUPS,
)
NONE_KEY = "(none)"
UNATTRIBUTED = "unattributed"
_RAW_GROUPS = {"session", "key", "billing"}
_COLUMNS = {"key": "key_fingerprint"}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
Range = tuple[Bound, Bound]


async def resolve(engine: AsyncEngine, f: Filters) -> Filters:
    """The window to answer for (see the module doc): ``f``, or ``f`` with its start at the
    top of its hour when retention purged that hour's raw events. A report by ``source``
    over purged hours is a ``ReportError``."""
    whole_hour = f.start is not None and hour_of(f.start) == as_utc(f.start)
    if f.source is None and (f.start is None or whole_hour):
        return f
    purged = await purged_before(engine)
    if purged is None:
        return f
    if f.source is not None and (f.start is None or as_utc(f.start) < purged):
        raise ReportError(
            f"raw events before {purged.isoformat()} were purged (TOKENMETER_RETENTION_DAYS) and"
            f" the rollups do not keep the {f.source} events apart: start at that time or later"
        )
    if f.start is None or whole_hour or as_utc(f.start) >= purged:
        return f
    return replace(f, start=hour_of(f.start))


async def usage(engine: AsyncEngine, group_by: str, filters: Filters) -> list[tuple[str, Totals]]:
    """Totals per group over exactly ``[start, end)`` of ``resolve(filters)`` (module doc)."""
    if group_by not in GROUPS:
        raise ReportError(f"group_by must be one of {', '.join(GROUPS)}; got {group_by!r}")
    filters = await resolve(engine, filters)
    if group_by in (*WORK_GROUPS, "task"):
        return await _work_usage(engine, group_by, filters)
    table: sa.FromClause
    if group_by in _RAW_GROUPS:
        table, where = usage_events, conditions(usage_events, filters)
    else:
        table, where = window_source(filters, engine.dialect.name), []
    key = _group_key(table, group_by, engine)
    query = sa.select(key.label("key"), *sum_columns(table)).group_by(key).order_by(key)
    query = query.where(*where)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(key_text(row[0]), totals_of(row, 1)) for row in rows]


def work_key(group_by: str) -> sa.ColumnElement[Any]:
    """The work unit of an event of ``WITH_CONTEXT`` (or a row of ``with_context``):
    ``host/owner/name`` (repo), ``owner/name:branch``, ``owner/name#123`` (pr) or the ticket;
    NULL when not known."""
    c = session_context.c
    project = c.repo_owner + "/" + c.repo_name
    keys: dict[str, sa.ColumnElement[Any]] = {
        "repo": c.repo_host + "/" + project,
        "branch": sa.func.coalesce(project + ":", "") + c.branch,
        "pr": project + "#" + sa.cast(c.pr, sa.String),
        "ticket": c.ticket,
    }
    return keys[group_by]


async def _work_usage(
    engine: AsyncEngine, group_by: str, filters: Filters
) -> list[tuple[str, Totals]]:
    if group_by == "task":  # the task rollups, as every task report reads them
        source = task_source(filters, engine.dialect.name)
        key = resolved_task(source)
        query = sa.select(key.label("key"), *sum_columns(source)).select_from(with_context(source))
    else:  # the session rollup, each session's work context joined at read time
        source = session_source(filters, engine.dialect.name)
        key = work_key(group_by)
        query = sa.select(key.label("key"), *sum_columns(source)).select_from(with_context(source))
    query = query.group_by(key)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    none = NONE_KEY if group_by == "task" else UNATTRIBUTED
    found = [(none if row[0] is None else str(row[0]), totals_of(row, 1)) for row in rows]
    if group_by == "task":
        return sorted(found, key=lambda row: row[0])
    return sorted(found, key=lambda row: (row[0] == UNATTRIBUTED, -row[1].cost_usd, row[0]))


def total_of(rows: list[tuple[str, Totals]]) -> Totals:
    return sum_totals([part for _, part in rows])


def window_source(f: Filters, dialect: str) -> sa.Subquery:
    """Rollup-shaped rows (``usage_hourly``'s columns) for exactly ``f``'s events: the whole
    hours from the rollups, the partial edge hours summed from raw events."""
    first, stop = _hour_ceil_of(f.start), _hour_floor_of(f.end)
    no_whole_hour = first is not None and stop is not None and first >= stop
    if no_whole_hour or f.source is not None:  # raw events alone (the rollups have no source)
        return hourly_sums(dialect, *conditions(usage_events, f)).subquery("window")
    parts = [*rollup_parts(first, stop, f)]
    edges: list[Range] = []
    if f.start is not None and f.start != first:
        edges.append((f.start, first))
    if f.end is not None and f.end != stop:
        edges.append((stop, f.end))
    if edges:
        parts.append(_raw_part(edges, f, dialect))
    return sa.union_all(*parts).subquery("window")


def rollup_source(f: Filters) -> sa.Subquery:
    """The rollup rows for the whole hours from the one ``f.start`` falls in up to ``f.end``
    (what ``usage_hourly`` alone would give), filtered by user, team and model."""
    first, stop = _hour_floor_of(f.start), _hour_ceil_of(f.end)
    return sa.union_all(*rollup_parts(first, stop, f)).subquery("rollup")


def rollup_parts(first: Bound, stop: Bound, f: Filters) -> list[sa.Select[Any]]:
    """Selects of the rollup rows of hours ``[first, stop)``: whole days daily, the rest
    hourly."""
    days, hours = split_range(first, stop)
    parts: list[sa.Select[Any]] = []
    if days is not None:
        parts.append(_daily_part(days, f))
    if hours:
        parts.append(_hourly_part(hours, f))
    return parts


def _raw_part(edges: list[Range], f: Filters, dialect: str) -> sa.Select[Any]:
    ts = usage_events.c.ts
    ranges = [sa.and_(sa.true(), *between(ts, lo, hi)) for lo, hi in edges]
    return hourly_sums(dialect, sa.or_(*ranges), *who(usage_events, f))


def split_range(first: Bound, stop: Bound) -> tuple[Range | None, list[Range]]:
    """Hours ``[first, stop)`` (None: unbounded) as whole days ``[lo, hi)`` (None when there is
    no whole day) plus the hour ranges left at either edge."""
    lo = None if first is None else _day_ceil(first)
    hi = None if stop is None else day_of(stop)
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
    where = between(c.day, *days) + who(usage_daily, f)
    return sa.select(c.day.label("hour"), *(c[n] for n in (*ROLLUP_KEY[1:], *ROLLUP_SUMS))).where(
        *where
    )


def _hourly_part(hours: list[Range], f: Filters) -> sa.Select[Any]:
    c = usage_hourly.c
    ranges = [sa.and_(sa.true(), *between(c.hour, lo, hi)) for lo, hi in hours]
    return sa.select(*(c[n] for n in (*ROLLUP_KEY, *ROLLUP_SUMS))).where(
        sa.or_(*ranges), *who(usage_hourly, f)
    )


def _hour_floor_of(moment: Bound) -> Bound:
    return None if moment is None else hour_of(moment)


def _hour_ceil_of(moment: Bound) -> Bound:
    """The first hour boundary at or after ``moment``: an hour starts before ``moment`` exactly
    when it starts before this."""
    if moment is None:
        return None
    utc = as_utc(moment)
    floor = hour_of(utc)
    return floor if floor == utc else floor + HOUR


def _day_ceil(moment: datetime) -> datetime:
    floor = day_of(moment)
    return floor if floor == moment else floor + DAY


def _group_key(table: sa.FromClause, group_by: str, engine: AsyncEngine) -> sa.ColumnElement[Any]:
    if group_by == "day":
        column = "ts" if table is usage_events else "hour"
        return sa.literal_column(bucket(DAY_LABEL_SQL, engine.dialect.name, column))
    return table.c[_COLUMNS.get(group_by, group_by)]


def key_text(value: Any) -> str:
    if value is None or value == "":
        return NONE_KEY
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)
