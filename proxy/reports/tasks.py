"""Per-task answers from raw events: one task's view, the task list, and the ROI report.

A task's cost in a list is the sum of its events' costs in the window (filters pick which events
count, exactly as every other report counts them); its value comes from its record in
``proxy.tasks``. ROI = value ÷ the task's *whole* cost (every event of the task, whatever the
window: the value is the whole task's, so a partial window must not divide it by part of the
cost), a multiple; computed over the priced part when some requests have no price (the row says
``task_cost_complete: false``), unknown when none has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import (
    ReportError,
    Totals,
    exact,
    money,
    sum_columns,
    sum_totals,
    totals_of,
)
from proxy.reports.usage import Filters, conditions
from proxy.store.tables import usage_events
from proxy.tasks import TaskRecord, roi, task_records
from proxy.usage import as_utc

SORTS = ("cost", "roi", "recent")


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
    c = usage_events.c
    where = c.task == task_id
    async with engine.connect() as conn:
        span = (
            await conn.execute(sa.select(sa.func.min(c.ts), sa.func.max(c.ts)).where(where))
        ).one()
        if span[0] is None:
            return None
        by_model_rows = await conn.execute(
            sa.select(c.model, *sum_columns(usage_events)).where(where).group_by(c.model)
        )
        by_model = {(row[0] or "unknown"): totals_of(row, 1) for row in by_model_rows}
        users = await _distinct(conn, c.user, where)
        sessions = await _distinct(conn, c.session, where)
    total = sum_totals(list(by_model.values()))
    record = (await task_records(engine, [task_id])).get(task_id)
    return TaskView(
        task_id, as_utc(span[0]), as_utc(span[1]), users, sessions, total, by_model, record
    )


async def _distinct(conn: Any, column: sa.Column[Any], where: Any) -> list[str]:
    rows = await conn.execute(sa.select(column).where(where, column.is_not(None)).distinct())
    return sorted(str(r[0]) for r in rows)


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
    """Tasks with events matching ``filters``, sorted by cost, ROI (unknown last) or recency."""
    if sort not in SORTS:
        raise ReportError(f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
    found = sort_tasks(await _task_rows(engine, filters), sort)
    return await _with_whole(engine, filters, found[:limit] if limit else found)


async def tasks_and_roi(
    engine: AsyncEngine, filters: Filters, limit: int
) -> tuple[list[TaskRow], RoiReport]:
    """The ``limit`` costliest tasks and the ROI report, from one read of the events."""
    found = await _task_rows(engine, filters)
    costliest = await _with_whole(engine, filters, sort_tasks(found, "cost")[:limit])
    return costliest, roi_of(found, filters)


async def _task_rows(engine: AsyncEngine, filters: Filters) -> list[TaskRow]:
    """Every task with events matching ``filters``; ``whole`` is exact for tasks with a value
    (what ROI needs) and, until ``_with_whole``, the windowed totals for the others: reading
    every task's whole cost would be a second pass over all their events."""
    c = usage_events.c
    query = (
        sa.select(c.task, sa.func.min(c.ts), sa.func.max(c.ts), *sum_columns(usage_events))
        .where(c.task.is_not(None), *conditions(usage_events, filters))
        .group_by(c.task)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    records = await task_records(engine, [row[0] for row in rows])
    windowed = {row[0]: totals_of(row, 3) for row in rows}
    valued = [task for task, record in records.items() if record.value()[0] is not None]
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
    c = usage_events.c
    query = (
        sa.select(c.task, *sum_columns(usage_events)).where(c.task.in_(task_ids)).group_by(c.task)
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
    return roi_of(await _task_rows(engine, filters), filters)


def roi_of(rows: list[TaskRow], filters: Filters) -> RoiReport:
    """The ROI report of the tasks in ``rows`` (``list_tasks`` over ``filters``)."""
    valued = [row for row in rows if row.value_usd is not None]
    return RoiReport(sort_tasks(valued, "roi"), filters)
