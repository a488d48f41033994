"""Per-task answers: one task's view (its raw events), the task list and the ROI report (the
task rollups, ``task_source``).

An event's task is the one its ``x-tokenmeter-task`` header named, else its session's ticket
(the branch name's, from ``session_context``), else its session (``window.work_task``): so a
ticket is one task across sessions, people and days with no header set. The task rollups keep
the event's own task and, when it named none, its session; the ticket is joined at read time
(``task_source.resolved_task``), so the list and one task's view always agree.

A task's cost in a list is the sum of its events' costs in the window (filters pick which events
count, exactly as every other report counts them); its value comes from its record in
``proxy.tasks``. ROI = value ÷ the task's *whole* cost (every event of the task, whatever the
window: the value is the whole task's, so a partial window must not divide it by part of the
cost), a multiple; computed over the priced part when some requests have no price (the row says
``task_cost_complete: false``), unknown when none has one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.task_source import (
    covering,
    daily_days,
    of_tasks,
    one_task,
    resolved_task,
    task_source,
    ticketed,
    whole_source,
    with_context,
)
from proxy.reports.totals import (
    ReportError,
    Totals,
    exact,
    money,
    sum_columns,
    totals_of,
)
from proxy.reports.window import Filters
from proxy.reports.work import slice_of
from proxy.tasks import TaskRecord, roi, task_records, valued_records
from proxy.usage import as_utc

SORTS = ("cost", "roi", "recent")
log = logging.getLogger("tokenmeter.reports.tasks")


@dataclass(slots=True)
class TaskView:
    task_id: str
    first_seen: datetime
    last_seen: datetime
    users: list[str]
    sessions: list[str]
    totals: Totals
    by_model: dict[str, Totals]
    record: TaskRecord | None = None

    @property
    def roi(self) -> Decimal | None:
        value = self.record.value()[0] if self.record else None
        return roi(value, self.totals.known_cost_usd)

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "users": self.users,
            "sessions": self.sessions,
            **self.totals.as_json(),
            **_value_json(self.task_id, self.record),
            "roi": None if self.roi is None else str(self.roi),
            "by_model": {model: t.as_json() for model, t in self.by_model.items()},
        }


def _value_json(task_id: str, record: TaskRecord | None) -> dict[str, Any]:
    return (record or TaskRecord(task_id)).as_json()


async def task_view(engine: AsyncEngine, task_id: str) -> TaskView | None:
    """One task's tokens, dollars and ROI, from its raw events. None if no event names it."""
    found = await slice_of(engine, await one_task(engine, task_id))
    if found is None:
        return None
    record = (await task_records(engine, [task_id])).get(task_id)
    return TaskView(
        task_id,
        found.first_seen,
        found.last_seen,
        found.users,
        found.sessions,
        found.totals,
        found.by_model,
        record,
    )


@dataclass(slots=True)
class TaskRow:
    """One task in a list: its totals over the filtered events, over all its events, and its
    record."""

    task_id: str
    first_seen: datetime
    last_seen: datetime
    totals: Totals
    record: TaskRecord | None
    whole: Totals  # every event of the task, whatever the window: what ROI divides by

    @property
    def value_usd(self) -> Decimal | None:
        return self.record.value()[0] if self.record else None

    @property
    def roi(self) -> Decimal | None:
        return roi(self.value_usd, self.whole.known_cost_usd)

    def as_json(self) -> dict[str, Any]:
        whole = self.whole.known_cost_usd
        return {
            "task_id": self.task_id,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            **self.totals.as_json(),
            **_value_json(self.task_id, self.record),
            "task_cost_usd": None if whole is None else money(whole),
            "task_cost_complete": self.whole.cost_complete,
            "roi": None if self.roi is None else str(self.roi),
        }


async def list_tasks(
    engine: AsyncEngine, filters: Filters, sort: str = "cost", limit: int | None = None
) -> list[TaskRow]:
    """Tasks with events matching ``filters``, sorted by cost, ROI (unknown last) or recency;
    the first ``limit`` of them (every one when None)."""
    if sort not in SORTS:
        raise ReportError(f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
    if sort == "roi" and limit:
        found = await _best_roi(engine, filters, limit)
    else:
        found = sort_tasks(await _task_rows(engine, filters, order=sort, limit=limit), sort)
    return await _with_whole(engine, filters, found[:limit] if limit else found)


async def _best_roi(engine: AsyncEngine, filters: Filters, limit: int) -> list[TaskRow]:
    """The ``limit`` first tasks by ROI: the valued ones with a known ROI, then the rest (valued
    with an unknown ROI, and every task without a value) by task id, read only that far."""
    valued = await _task_rows(engine, filters, only=list(await valued_records(engine)))
    known = sort_tasks([row for row in valued if row.roi is not None], "roi")
    if len(known) >= limit:
        return known
    taken = {row.task_id for row in known}
    rest = await _task_rows(engine, filters, order="task", limit=limit + len(taken))
    return known + sort_tasks([row for row in rest if row.task_id not in taken], "roi")


async def tasks_and_roi(
    engine: AsyncEngine, filters: Filters, limit: int
) -> tuple[list[TaskRow], RoiReport]:
    """The ``limit`` costliest tasks and the ROI report."""
    found = await _task_rows(engine, filters, order="cost", limit=limit)
    costliest = await _with_whole(engine, filters, sort_tasks(found, "cost"))
    return costliest, await roi_report(engine, filters)


# Up to this many days read from ``task_daily``, one direct pass is cheaper than bounding.
DIRECT_DAYS = 7
# How a task list is ordered in SQL before its limit: what each (task, session) adds up to
# first, then how those combine per task. Both figures can only grow with the window (dollars are
# never negative), which lets ``_first`` bound a window by the whole months around it.
_ORDERS: dict[str, tuple[Any, Any]] = {
    "cost": (lambda c: sa.func.sum(c.cost_usd), sa.func.sum),
    "recent": (lambda c: sa.func.max(c.last_ts), sa.func.max),
    "task": (lambda c: sa.literal(0), sa.func.max),
}


async def _first(engine: AsyncEngine, filters: Filters, order: str, limit: int) -> list[str]:
    """The first ``limit`` tasks by ``order`` (ties by task id). A window of whole months is
    ranked in one narrow pass. Any other is bounded by the whole months around it (a task's
    figure there is at least its figure in the window): tasks are read exactly in the order of
    their bounds, a growing batch at a time through the ``task`` index, until no bound left can
    beat the ``limit``-th exact figure."""
    cover = covering(filters)
    if order == "task" or daily_days(filters) <= DIRECT_DAYS or not _tight(filters, cover):
        return [task for task, _ in await _ranked(engine, filters, order, limit)]
    bounds = await _ranked(engine, cover, order)
    exact: list[tuple[str, Any]] = []
    done, size = 0, 4 * limit
    while done < len(bounds):
        batch = [task for task, _ in bounds[done : done + size]]
        done, size = done + size, 2 * size
        exact = _best(exact + await _ranked(engine, filters, order, among=batch))
        if len(exact) >= limit and done < len(bounds) and bounds[done][1] < exact[limit - 1][1]:
            break
    return [task for task, _ in exact[:limit]]


def _tight(window: Filters, cover: Filters) -> bool:
    """Whether ``cover`` is at most twice ``window``: its bounds then stay close to the exact
    figures, and few tasks are read before they can no longer win."""
    now = datetime.now(UTC)
    if window.start is None or cover.start is None:
        return True
    extra = (window.start - cover.start) + ((cover.end or now) - (window.end or now))
    return extra < (window.end or now) - window.start


def _best(found: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(task, figure) pairs, highest figure first, ties by task id."""
    return sorted(sorted(found), key=lambda pair: pair[1], reverse=True)


async def _ranked(
    engine: AsyncEngine,
    filters: Filters,
    order: str,
    limit: int | None = None,
    among: list[str] | None = None,
) -> list[tuple[str, Any]]:
    """(task, its ``order`` figure) over ``filters``, best first (``_best``), the first
    ``limit``; only the tasks ``among`` when given. The figure is summed per task and session
    before the join to their context, one narrow pass."""
    source, (value, combine) = task_source(filters, engine.dialect.name), _ORDERS[order]
    c = source.c
    pre = sa.select(c.task, c.session, value(c).label("v")).group_by(c.task, c.session)
    if among is not None:
        sessions = await ticketed(engine, among)
        could = c.task.in_(among)
        pre = pre.where(sa.or_(could, c.session.in_(sessions)) if sessions else could)
    each = pre.subquery("each")
    task_id, figure = resolved_task(each), combine(each.c.v)
    ordered = task_id.collate("C") if engine.dialect.name == "postgresql" else task_id
    by = ([] if order == "task" else [figure.desc()]) + [ordered]
    query = (
        sa.select(task_id, figure)
        .select_from(with_context(each))
        .where(task_id.is_not(None) if among is None else task_id.in_(among))
        .group_by(task_id)
        .order_by(*by)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(row[0], row[1]) for row in rows]


async def _task_rows(
    engine: AsyncEngine,
    filters: Filters,
    *,
    order: str | None = None,
    limit: int | None = None,
    only: list[str] | None = None,
) -> list[TaskRow]:
    """The tasks with events matching ``filters`` (only those of ``only``'s records when given;
    the first ``limit`` by ``order`` when given). ``whole`` is exact for tasks with a value
    (what ROI needs) and, until ``_with_whole``, the windowed totals for the others."""
    if limit and order is not None:
        only = await _first(engine, filters, order, limit)
    if only is not None and not only:
        return []
    sessions = [] if only is None else await ticketed(engine, only)
    source = task_source(filters, engine.dialect.name)
    task_id, c = resolved_task(source), source.c
    query = (
        sa.select(task_id, sa.func.min(c.first_ts), sa.func.max(c.last_ts), *sum_columns(source))
        .select_from(with_context(source))
        .where(task_id.is_not(None) if only is None else of_tasks(source, only, sessions))
        .group_by(task_id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    records = await task_records(engine, [row[0] for row in rows])
    windowed = {row[0]: totals_of(row, 3) for row in rows}
    valued = [t for t in windowed if t in records and records[t].value()[0] is not None]
    whole = {} if filters == Filters() else await _whole_totals(engine, valued)
    return [
        TaskRow(
            task,
            as_utc(first),
            as_utc(last),
            windowed[task],
            records.get(task),
            whole.get(task, windowed[task]),
        )
        for task, first, last, *_ in rows
    ]


async def _with_whole(engine: AsyncEngine, filters: Filters, rows: list[TaskRow]) -> list[TaskRow]:
    """``rows`` with every task's whole totals read (see ``_task_rows``)."""
    if filters == Filters():
        return rows  # the window is everything: windowed totals are whole
    missing = [row.task_id for row in rows if row.value_usd is None]
    whole = await _whole_totals(engine, missing)
    for row in rows:
        row.whole = whole.get(row.task_id, row.whole)
    return rows


def sort_tasks(rows: list[TaskRow], sort: str) -> list[TaskRow]:
    """``rows`` by cost (highest first), ROI (best first, unknown last) or recency."""
    return sorted(rows, key=_SORT_KEYS[sort])


async def _whole_totals(engine: AsyncEngine, task_ids: list[str]) -> dict[str, Totals]:
    """Every event of each task, whatever the window."""
    if not task_ids:
        return {}
    source = whole_source()
    task = resolved_task(source)
    query = (
        sa.select(task, *sum_columns(source))
        .select_from(with_context(source))
        .where(of_tasks(source, task_ids, await ticketed(engine, task_ids)))
        .group_by(task)
    )
    async with engine.connect() as conn:
        return {row[0]: totals_of(row, 1) for row in await conn.execute(query)}


_SORT_KEYS: dict[str, Any] = {
    "cost": lambda t: (-t.totals.cost_usd, t.task_id),
    "roi": lambda t: (t.roi is None, -(t.roi or 0), t.task_id),
    "recent": lambda t: (-t.last_seen.timestamp(), t.task_id),
}


@dataclass(slots=True)
class RoiReport:
    """Tasks that have a value, and what they add up to."""

    tasks: list[TaskRow]
    filters: Filters

    @property
    def cost_usd(self) -> Decimal:
        """The tasks' dollars in the window."""
        return sum((t.totals.cost_usd for t in self.tasks), Decimal(0))

    @property
    def task_cost_usd(self) -> Decimal:
        """The tasks' whole dollars: what the total ROI divides by."""
        return sum((t.whole.cost_usd for t in self.tasks), Decimal(0))

    @property
    def value_usd(self) -> Decimal:
        return sum((t.value_usd or Decimal(0) for t in self.tasks), Decimal(0))

    @property
    def cost_complete(self) -> bool:
        """Whether every request of the tasks has a price."""
        return all(t.whole.cost_complete for t in self.tasks)

    @property
    def roi(self) -> Decimal | None:
        """The tasks' value over their whole cost."""
        return roi(self.value_usd, self.task_cost_usd)

    def as_json(self) -> dict[str, Any]:
        overall = self.roi
        return {
            **self.filters.window_json(),
            "rows": [task.as_json() for task in self.tasks],
            "total": {
                "tasks": len(self.tasks),
                "cost_usd": money(self.cost_usd),
                "task_cost_usd": money(self.task_cost_usd),
                "cost_complete": self.cost_complete,
                "value_usd": exact(self.value_usd),
                "roi": None if overall is None else str(overall),
            },
        }


async def roi_report(engine: AsyncEngine, filters: Filters) -> RoiReport:
    """Every task with a value and events matching ``filters``, best ROI first."""
    found = await _task_rows(engine, filters, only=list(await valued_records(engine)))
    return roi_of(found, filters)


def roi_of(rows: list[TaskRow], filters: Filters) -> RoiReport:
    """The ROI report of the tasks in ``rows`` (``list_tasks`` over ``filters``)."""
    valued = [row for row in rows if row.value_usd is not None]
    return RoiReport(sort_tasks(valued, "roi"), filters)


async def value_by_team(engine: AsyncEngine) -> list[tuple[str, Decimal, Decimal]]:
    """(team, value, cost) over every task that has a value and events: each task's value
    split over the teams of its events in proportion to their dollars (to their requests
    when it has no priced dollars), its cost counted in each event's team ('' for none).
    Summed over teams, the value and cost are ``roi_report``'s totals for all time."""
    valued = [row.task_id for row in (await roi_report(engine, Filters())).tasks if row.value_usd]
    records = await task_records(engine, valued)
    source = whole_source()
    task, c = resolved_task(source), source.c
    query = (
        sa.select(task, c.team, *sum_columns(source))
        .select_from(with_context(source))
        .where(of_tasks(source, valued, await ticketed(engine, valued)))
        .group_by(task, c.team)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all() if valued else []
    by_task: dict[str, list[tuple[str, Totals]]] = {}
    for row in rows:
        by_task.setdefault(row[0], []).append((row[1] or "", totals_of(row, 2)))
    teams: dict[str, tuple[Decimal, Decimal]] = {}
    for task_id, parts in by_task.items():
        value = records[task_id].value()[0] or Decimal(0)
        for team, share, cost in _split(value, parts):
            before = teams.get(team, (Decimal(0), Decimal(0)))
            teams[team] = (before[0] + share, before[1] + cost)
    return [(team, value, cost) for team, (value, cost) in sorted(teams.items())]


def _split(value: Decimal, parts: list[tuple[str, Totals]]) -> list[tuple[str, Decimal, Decimal]]:
    """(team, its share of ``value``, its dollars) for one task's per-team totals."""
    cost = sum((t.cost_usd for _, t in parts), Decimal(0))
    requests = sum(t.requests for _, t in parts)
    return [
        (team, value * (t.cost_usd / cost if cost else Decimal(t.requests) / requests), t.cost_usd)
        for team, t in parts
    ]


async def value_by_team_quietly(
    engine: AsyncEngine, timeout_s: float = 2.0
) -> list[tuple[str, Decimal, Decimal]] | None:
    """``value_by_team`` that never raises and never waits more than ``timeout_s`` (before a
    scrape): None when the database is away or hangs."""
    try:
        return await asyncio.wait_for(value_by_team(engine), timeout_s)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("task value for /metrics not refreshed: %r", exc)
        return None
