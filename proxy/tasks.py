"""Task records: what a task was worth in people's time, so its token cost has an ROI.

A task's tokens and dollars come from usage events (the proxy sees ``x-tokenmeter-task``); what
the same work would have cost people is entered by hand (``PATCH /api/v1/tasks/{id}``,
``tokenmeter task set``) into the ``tasks`` table. Contract: the value of a task is ``value_usd``
when set, else ``human_hours × hourly_rate_usd`` when both are set, else unknown; ROI is that
value divided by the task's token cost, as a multiple. Nothing is guessed: no default hourly rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import text
from proxy.store.rollup import dialect_insert
from proxy.store.tables import tasks
from proxy.store.types import FIXED_MAX

EDITABLE = ("title", "human_hours", "hourly_rate_usd", "value_usd")
ROI_QUANTUM = Decimal("0.01")


class TaskRecordError(ValueError):
    """A task record was given a value that cannot be right (negative or absurdly large hours
    or dollars, a title with control characters)."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One row of ``tasks``."""

    task_id: str
    title: str | None = None
    human_hours: Decimal | None = None
    hourly_rate_usd: Decimal | None = None
    value_usd: Decimal | None = None
    updated_at: datetime | None = None

    def value(self) -> tuple[Decimal | None, str | None]:
        """(what the work was worth in dollars, how that was decided) or (None, None)."""
        if self.value_usd is not None:
            return self.value_usd, "value_usd"
        if self.human_hours is not None and self.hourly_rate_usd is not None:
            return self.human_hours * self.hourly_rate_usd, "human_hours x hourly_rate_usd"
        return None, None

    def as_json(self) -> dict[str, Any]:
        value, basis = self.value()
        return {
            "title": self.title,
            "human_hours": _text(self.human_hours),
            "hourly_rate_usd": _text(self.hourly_rate_usd),
            "value_usd": _text(value),
            "value_basis": basis,
        }


def roi(value: Decimal | None, cost: Decimal | None) -> Decimal | None:
    """``value / cost`` as a multiple rounded half-even to 0.01; None when either is unknown/0."""
    if value is None or not cost:
        return None
    return (value / cost).quantize(ROI_QUANTUM, rounding=ROUND_HALF_EVEN)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"


def _check(record: TaskRecord) -> None:
    wrong = record.title and text.problem(record.title, text.TEXT_MAX_CHARS)
    if wrong:
        raise TaskRecordError(f"title {wrong}")
    for name in EDITABLE[1:]:
        value = getattr(record, name)
        if value is not None and value < 0:
            raise TaskRecordError(f"{name} must not be negative, got {value}")
        if value is not None and value > FIXED_MAX:
            raise TaskRecordError(f"{name} {value} is too large (at most {FIXED_MAX})")


async def task_records(engine: AsyncEngine, task_ids: Iterable[str]) -> dict[str, TaskRecord]:
    """The records of ``task_ids`` that exist."""
    ids = list(task_ids)
    if not ids:
        return {}
    query = sa.select(tasks).where(tasks.c.task_id.in_(ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return {row["task_id"]: TaskRecord(**row) for row in rows}


async def update_task(
    engine: AsyncEngine, task_id: str, changes: Mapping[str, Any], now: datetime | None = None
) -> TaskRecord:
    """Set the fields in ``changes`` (a None value clears one), keep the others; upsert."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TaskRecordError(f"unknown task fields: {', '.join(sorted(unknown))}")
    current = (await task_records(engine, [task_id])).get(task_id, TaskRecord(task_id))
    record = replace(current, **changes, updated_at=now or datetime.now(UTC))
    _check(record)
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    async with engine.begin() as conn:
        insert = dialect_insert(conn, tasks).values(values)
        update = {name: insert.excluded[name] for name in (*EDITABLE, "updated_at")}
        await conn.execute(insert.on_conflict_do_update(index_elements=["task_id"], set_=update))
    return record
