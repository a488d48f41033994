"""Where task reports read: the task rollups for a window, and one task's raw events.

``task_source(filters, dialect)`` answers rows shaped like ``task_daily`` (``day``, the task key,
the sums, ``first_ts``/``last_ts``) for exactly the events of ``filters``: whole UTC months from
``task_monthly``, the other whole days from ``task_daily``, the partial days at either edge
summed from raw events as a task rollup row sums them (``rollup.task_sums``). ``resolved_task``
is each row's task, as ``window.work_task`` gives it for an event: the row's own task, unless its
events named none of their own (``session`` set) and their session has a ticket in
``session_context`` (joined by ``with_context``). A ticket given to a session later moves its
events' rows to the ticket's task at once: no rollup row changes.

``session_source(filters, dialect)`` is the same for ``session_daily`` (whole days; the partial
days at either edge from raw events, ``rollup.session_sums``): what work-unit reports (by repo,
branch, pr, ticket) read, joined by ``with_context`` on the session of every event.

``one_task(engine, task_id)`` is the condition on ``window.WITH_CONTEXT`` for one task's events,
found through indexes (``task``; the partial ``session`` index of events without a task) for the
task itself and for the sessions its ticket names.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.window import Bound, Filters, conditions, work_task
from proxy.store.aggregates import (
    ROLLUP_SUMS,
    SESSION_KEY,
    SPAN_COLUMNS,
    TASK_KEY,
    day_of,
    month_of,
)
from proxy.store.rollup import session_sums, task_sums
from proxy.store.tables import (
    session_context,
    session_daily,
    task_daily,
    task_monthly,
    usage_events,
)

DAY = timedelta(days=1)
_COLUMNS = (*TASK_KEY, *ROLLUP_SUMS, *(name for name, _, _ in SPAN_COLUMNS))


def task_source(f: Filters, dialect: str) -> sa.Subquery:
    """``task_daily``-shaped rows for exactly ``f``'s events (module doc)."""
    first, stop = _day_ceil(f.start), None if f.end is None else day_of(f.end)
    no_whole_day = first is not None and stop is not None and first >= stop
    if no_whole_day or f.source is not None:  # raw events alone (the rollups have no source)
        return task_sums(dialect, *conditions(usage_events, f)).subquery("tasks")
    parts = _rollup_parts(first, stop, f)
    if f.start is not None and first is not None and f.start != first:
        parts.append(_raw(f, f.start, first, dialect))
    if f.end is not None and stop is not None and f.end != stop:
        parts.append(_raw(f, stop, f.end, dialect))
    return sa.union_all(*parts).subquery("tasks")


def session_source(f: Filters, dialect: str) -> sa.Subquery:
    """``session_daily``-shaped rows for exactly ``f``'s events (module doc)."""
    first, stop = _day_ceil(f.start), None if f.end is None else day_of(f.end)
    no_whole_day = first is not None and stop is not None and first >= stop
    if no_whole_day or f.source is not None:  # raw events alone (the rollup has no source)
        return session_sums(dialect, *conditions(usage_events, f)).subquery("sessions")
    c = session_daily.c
    window = Filters(first, stop, f.user, f.team, f.model)
    columns = (c[name] for name in (*SESSION_KEY, *ROLLUP_SUMS))
    parts = [sa.select(c.day, *columns).where(*conditions(session_daily, window))]
    edges = [(f.start, first), (stop, f.end)]
    for lo, hi in edges:
        if lo is not None and hi is not None and lo != hi:
            edge = Filters(lo, hi, f.user, f.team, f.model)
            rows = session_sums(dialect, *conditions(usage_events, edge)).subquery()
            parts.append(sa.select(*(rows.c[n] for n in ("day", *SESSION_KEY, *ROLLUP_SUMS))))
    return sa.union_all(*parts).subquery("sessions")


def _rollup_parts(first: Bound, stop: Bound, f: Filters) -> list[sa.Select[Any]]:
    """Rows of the whole days ``[first, stop)``: whole months monthly, the other days daily."""
    lo = None if first is None else _month_ceil(first)
    hi = None if stop is None else month_of(stop)
    if lo is not None and hi is not None and lo >= hi:
        return [_part(task_daily, first, stop, f)]
    parts = [_part(task_monthly, lo, hi, f)]
    if first is not None and lo is not None and first < lo:
        parts.append(_part(task_daily, first, lo, f))
    if stop is not None and hi is not None and hi < stop:
        parts.append(_part(task_daily, hi, stop, f))
    return parts


def daily_days(f: Filters) -> int:
    """How many whole days of ``f`` ``task_source`` reads from ``task_daily`` (those outside
    whole months): what a list over ``f`` costs, roughly."""
    first, stop = _day_ceil(f.start), None if f.end is None else day_of(f.end)
    if first is not None and stop is not None and first >= stop:
        return 0
    lo = None if first is None else _month_ceil(first)
    hi = None if stop is None else month_of(stop)
    if lo is not None and hi is not None and lo >= hi:
        return ((stop or lo) - (first or lo)).days
    before = 0 if first is None or lo is None else (lo - first).days
    return before + (0 if stop is None or hi is None else (stop - hi).days)


def _part(table: sa.Table, lo: Bound, hi: Bound, f: Filters) -> sa.Select[Any]:
    """``table``'s rows of ``[lo, hi)`` (None: unbounded) and ``f``'s user, team and model."""
    time = table.c[table.c.keys()[0]]
    window = Filters(lo, hi, f.user, f.team, f.model)
    columns = (table.c[name] for name in _COLUMNS)
    return sa.select(time.label("day"), *columns).where(*conditions(table, window))


def _raw(f: Filters, lo: datetime, hi: datetime, dialect: str) -> sa.Select[Any]:
    edge = Filters(lo, hi, f.user, f.team, f.model)
    return task_sums(dialect, *conditions(usage_events, edge))


def with_context(source: sa.Subquery) -> sa.Join:
    """``source`` joined to the work context of its rows' sessions."""
    on = sa.and_(source.c.session != "", source.c.session == session_context.c.session)
    return source.outerjoin(session_context, on)


def resolved_task(source: sa.Subquery) -> sa.ColumnElement[Any]:
    """A row's task (module doc): over ``with_context(source)``."""
    ticket = session_context.c.ticket
    return sa.case((ticket.is_not(None), ticket), else_=sa.func.nullif(source.c.task, ""))


def of_tasks(
    source: sa.Subquery, task_ids: list[str], sessions: list[str]
) -> sa.ColumnElement[bool]:
    """The rows of ``with_context(source)`` whose task is one of ``task_ids`` (``sessions``:
    ``ticketed(engine, task_ids)``): first those that could be, by their own task or a session
    whose ticket is one (so the ``task`` index serves), then the exact test."""
    could: sa.ColumnElement[bool] = source.c.task.in_(task_ids)
    if sessions:
        could = sa.or_(could, source.c.session.in_(sessions))
    return sa.and_(could, resolved_task(source).in_(task_ids))


async def ticketed(engine: AsyncEngine, task_ids: list[str]) -> list[str]:
    """The sessions whose ticket is one of ``task_ids``."""
    ctx = session_context.c
    async with engine.connect() as conn:
        found = await conn.execute(sa.select(ctx.session).where(ctx.ticket.in_(task_ids)))
        return sorted(found.scalars())


def covering(f: Filters) -> Filters:
    """``f`` widened to whole UTC months: every event of ``f`` is one of its events."""
    end = None if f.end is None else month_of(f.end - timedelta(microseconds=1))
    after = None if end is None else (end + timedelta(days=32)).replace(day=1)
    start = None if f.start is None else month_of(f.start)
    return Filters(start, after, f.user, f.team, f.model)


def whole_source() -> sa.Subquery:
    """Every task rollup row, whatever its time: each task's whole history."""
    return _part(task_monthly, None, None, Filters()).subquery("tasks")


async def one_task(engine: AsyncEngine, task_id: str) -> sa.ColumnElement[bool]:
    """The condition on ``window.WITH_CONTEXT`` for exactly ``task_id``'s events (module doc)."""
    c, sessions = usage_events.c, await ticketed(engine, [task_id])
    some: list[sa.ColumnElement[bool]] = [c.task == task_id]
    if sessions:
        some += [c.task.in_(sessions), sa.and_(c.task.is_(None), c.session.in_(sessions))]
    return sa.and_(sa.or_(*some), work_task() == task_id)


def _day_ceil(moment: Bound) -> Bound:
    if moment is None:
        return None
    floor = day_of(moment)
    return floor if floor == moment else floor + DAY


def _month_ceil(day: datetime) -> datetime:
    floor = month_of(day)
    return floor if floor == day else (floor + timedelta(days=32)).replace(day=1)
