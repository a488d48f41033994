"""Task records: what a task was worth in people's time, so its token cost has an ROI.

A task's tokens and dollars come from usage events (the proxy sees ``x-tokenmeter-task``); what
the same work would have cost people is entered by hand (``PATCH /api/v1/tasks/{id}``,
``tokenmeter task set``) into the ``tasks`` table. Contract: the value of a task is ``value_usd``
when set, else ``human_hours × hourly_rate_usd`` when both are set, else unknown; ROI is that
value divided by the task's token cost, as a multiple. Nothing is guessed: no default hourly rate.

``parse_values_csv`` reads an issue tracker's export (ticket, estimated hours, rate or value) and
either returns every row or raises ``TaskImportError`` with each problem and its line;
``import_tasks`` then writes them all in one transaction: a file with one bad row changes
nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
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


async def valued_records(engine: AsyncEngine) -> dict[str, TaskRecord]:
    """Every record that gives its task a value (``TaskRecord.value``)."""
    c = tasks.c
    hours_at_rate = sa.and_(c.human_hours.is_not(None), c.hourly_rate_usd.is_not(None))
    query = sa.select(tasks).where(sa.or_(c.value_usd.is_not(None), hours_at_rate))
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
    async with engine.begin() as conn:
        await _upsert(conn, record)
    return record


async def _upsert(conn: Any, record: TaskRecord, keep_title: bool = False) -> None:
    """Insert or replace ``record``; with ``keep_title`` a None title keeps the stored one."""
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    insert = dialect_insert(conn, tasks).values(values)
    update: dict[str, Any] = {name: insert.excluded[name] for name in (*EDITABLE, "updated_at")}
    if keep_title:
        update["title"] = sa.func.coalesce(insert.excluded.title, tasks.c.title)
    await conn.execute(insert.on_conflict_do_update(index_elements=["task_id"], set_=update))


class TaskImportError(ValueError):
    """A values CSV was refused; ``errors`` holds (line number, message) for each problem."""

    def __init__(self, errors: Sequence[tuple[int, str]]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  line {line}: {message}" for line, message in self.errors)
        super().__init__(f"nothing imported; {len(self.errors)} problem(s):\n{lines}")


# Column -> (field, its other names in tracker exports).
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "task_id": ("ticket", "task", "key", "issue"),
    "title": ("summary",),
    "human_hours": ("hours", "estimate_hours", "estimate"),
    "hourly_rate_usd": ("rate", "hourly_rate"),
    "value_usd": ("value",),
}
MAX_REPORTED_ERRORS = 50


def parse_values_csv(content: str) -> list[TaskRecord]:
    """Every row of a values CSV (a ticket column and a value, or hours and a rate),
    validated; ``TaskImportError`` with every problem and its line if any row is wrong."""
    reader = csv.DictReader(io.StringIO(content.removeprefix("\ufeff"), newline=""))
    try:
        columns = _csv_columns(reader.fieldnames)
        found: list[TaskRecord] = []
        errors: list[tuple[int, str]] = []
        seen: dict[str, int] = {}
        for row in reader:
            record, wrong = _csv_record(row, columns)
            if record is not None and record.task_id in seen:
                wrong.append(
                    f"duplicate task {record.task_id!r} (first on line {seen[record.task_id]})"
                )
            if record is not None and not wrong:
                seen[record.task_id] = reader.line_num
                found.append(record)
            errors += [(reader.line_num, message) for message in wrong]
    except csv.Error as exc:
        raise TaskImportError([(reader.line_num + 1, f"not a valid CSV file: {exc}")]) from None
    if errors:
        raise TaskImportError(errors[:MAX_REPORTED_ERRORS])
    if not found:
        raise TaskImportError([(1, "the file has a header but no rows")])
    return found


def _csv_columns(fieldnames: Sequence[str] | None) -> dict[str, str]:
    """Field -> the file's column for it; ``TaskImportError`` for a header without a ticket
    column, with an unknown column, or with no value or hours column."""
    if not fieldnames:
        raise TaskImportError([(1, "empty file: expected a header line ticket,hours,rate,value")])
    names = {re.sub(r"[\s-]+", "_", name.strip().lower()): name for name in fieldnames}
    columns: dict[str, str] = {}
    for field, aliases in CSV_COLUMNS.items():
        for alias in (field, *aliases):
            if alias in names:
                columns[field] = names.pop(alias)
                break
    errors = [f"unknown column {name!r}" for name in names]
    if "task_id" not in columns:
        errors.append("missing column 'ticket'")
    if "value_usd" not in columns and "human_hours" not in columns:
        errors.append("no 'value' or 'hours' column: nothing to import")
    if errors:
        raise TaskImportError([(1, message) for message in errors])
    return columns


def _csv_record(
    row: Mapping[Any, Any], columns: Mapping[str, str]
) -> tuple[TaskRecord | None, list[str]]:
    if None in row:
        return None, ["more cells than columns"]
    cells = {field: (row.get(column) or "").strip() for field, column in columns.items()}
    wrong: list[str] = []
    amounts: dict[str, Decimal | None] = {}
    for field in EDITABLE[1:]:
        try:
            amounts[field] = Decimal(cells[field]) if cells.get(field) else None
        except InvalidOperation:
            wrong.append(f"{field} {cells[field]!r} is not a number")
    task_id = cells["task_id"]
    if not task_id or text.problem(task_id):
        wrong.append(f"ticket {text.problem(task_id) if task_id else 'is empty'}")
    if wrong:
        return None, wrong
    record = TaskRecord(
        task_id,
        cells.get("title") or None,
        amounts.get("human_hours"),
        amounts.get("hourly_rate_usd"),
        amounts.get("value_usd"),
    )
    if record.value()[0] is None:
        wrong.append("give a value, or hours and a rate")
    try:
        _check(record)
    except TaskRecordError as exc:
        wrong.append(str(exc))
    return (None if wrong else record), wrong


async def import_tasks(
    engine: AsyncEngine, records: Sequence[TaskRecord], now: datetime | None = None
) -> int:
    """Write ``records`` (from ``parse_values_csv``) in one transaction; how many. Each row
    sets a task's hours, rate and value (a blank cell clears one), and its title when given."""
    at = now or datetime.now(UTC)
    async with engine.begin() as conn:
        for record in records:
            await _upsert(conn, replace(record, updated_at=at), keep_title=True)
    return len(records)
