"""The one write path for usage rows: idempotent insert plus rollup, in one transaction.

``write_batch`` inserts rows with ``INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING`` and adds
to ``usage_hourly`` and ``usage_daily`` only the rows that INSERT returned. Writing the same rows
twice therefore changes nothing the second time, which is what makes spool replay safe after a
crash between commit and spool removal.

- PostgreSQL: one statement per transaction, one round trip. The rows travel as one array per
  column, each sent as one array literal string (``$n::text::type[]``, then ``unnest``): far
  cheaper in Python than asyncpg's per-element binary array encoding. The INSERT
  is a data-modifying CTE, what it RETURNED is grouped by hour × provider × model × user × team
  in SQL (``aggregates.SUMS``, as ``rollup.rebuild_rollups`` sums), and those hourly sums are
  upserted into ``usage_hourly`` and, summed again per day, into ``usage_daily``; the same rows
  summed per day and per month by task key go into ``task_daily`` and ``task_monthly``, and per day
  by session key into ``session_daily``. Every upsert
  feeds its rows in key order and every writer runs the same statement, so concurrent writers
  (pipelined batches, replicas) take rollup row locks in one global order and cannot deadlock
  on them.
- SQLite: ``sqlite_write.write_sqlite``: the batch as one JSON parameter, the insert and both
  rollup upserts in SQL (SQLAlchemy's executemany cost ~150 µs of Python per row there).

``is_rows_fault`` tells rows the database refuses (retrying them would never succeed: they go to
quarantine) from everything else, which is an outage (keep the rows, retry later). The default
is the outage: a refusal counts as the rows' fault only when its SQLSTATE is in class 22 (data
exception) or 23 (integrity constraint violation), or SQLite's result code is CONSTRAINT or
MISMATCH, or the driver cannot bind a value at all; decided by code, never by exception class
(an outage such as 57P01 admin_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections,
25006 read_only_sql_transaction or 55000 arrives as a plain ``DBAPIError``). A connection that
failed for any other reason is invalidated, so the next try connects afresh (after a failover a
pooled connection to the old primary would stay read-only).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.store.aggregates import (
    DAILY_KEY,
    DAY_SQL,
    MONTH_SQL,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    SESSION_DAILY_KEY,
    SESSION_ROLLED,
    SUMMED_COLUMNS,
    SUMS,
    TASK_DAILY_KEY,
    TASK_MONTHLY_KEY,
    TASK_ROLLED,
    added_sql,
    bucket,
    key_sql,
    quoted,
    session_rows_sql,
    task_added_sql,
    task_rows_sql,
)
from proxy.store.budgets import Tally, count_new
from proxy.store.rows import Row
from proxy.store.sqlite_write import write_sqlite
from proxy.store.tables import usage_events
from proxy.store.types import UTCDateTime


async def write_batch(
    engine: AsyncEngine,
    rows: Sequence[Row],
    tally: Tally | None = None,
) -> int:
    """Store ``rows``, their rollup and their budget counters atomically; return how many were
    new. Only the new rows are counted against budgets (``store.budgets.count_new``), in the
    same transaction: a replayed row counts nowhere twice. ``tally`` (if given) says whose
    leases the rows were spent under and receives the counters as the transaction left them."""
    if not rows:
        return 0
    unique = _unique(rows)
    write = _write_postgresql if engine.dialect.name == "postgresql" else write_sqlite

    async def write_all(conn: AsyncConnection) -> int:
        new = await write(conn, unique)
        await count_new(conn, [row for row in unique if row["event_id"] in new], tally or Tally())
        return len(new)

    return int(await _in_transaction(engine, write_all))


def _unique(rows: Sequence[Row]) -> list[Row]:
    """First row per event_id, so a duplicate inside one batch is not counted twice."""
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row["event_id"], row)
    return list(first.values())


ROWS_FAULT_SQLSTATE_CLASSES = frozenset({"22", "23"})
_ROWS_FAULT_SQLITE_CODES = frozenset({sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH})


def is_rows_fault(exc: BaseException) -> bool:
    """True only when the database refused these rows for what they hold (see module doc)."""
    code = error_code(exc)
    if code is None:
        return False
    if code.startswith("sqlite:"):
        return int(code.removeprefix("sqlite:")) & 0xFF in _ROWS_FAULT_SQLITE_CODES
    return code[:2] in ROWS_FAULT_SQLSTATE_CLASSES


def error_code(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (``"sqlite:<result code>"`` for SQLite; ``"22003"`` when
    the driver could not bind a value at all), or None when it carries none."""
    for error in _causes(exc):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            return sqlstate
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int):
            return f"sqlite:{code}"
        if isinstance(error, OverflowError):  # sqlite3 binds 64-bit integers at most
            return "22003"
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the DBAPI error SQLAlchemy wrapped, and what each was raised from."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending += [getattr(error, "orig", None), error.__cause__]


async def _in_transaction(engine: AsyncEngine, write: Callable[[AsyncConnection], Any]) -> Any:
    """``write(conn)`` in one transaction; on an outage the connection is invalidated."""
    async with engine.connect() as conn:
        try:
            async with conn.begin():
                return await write(conn)
        except DBAPIError as exc:
            if not is_rows_fault(exc) and not conn.invalidated:
                await conn.invalidate()
            raise


# -- PostgreSQL: insert + rollup in one statement -----------------------------------------------


async def _write_postgresql(conn: AsyncConnection, rows: Sequence[Row]) -> set[str]:
    """Insert + rollups in one statement; the ids of the rows that were new."""
    result = await conn.exec_driver_sql(_postgresql_write_sql(), _arrays(rows))
    return set(result.scalars())


_EVENT_COLUMNS = tuple(column.name for column in usage_events.columns)
_values_of = itemgetter(*_EVENT_COLUMNS)
Encode = Callable[[Any], str]


def _quote(value: str) -> str:
    """A string as a quoted PostgreSQL array element."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _iso(value: datetime) -> str:
    return value.isoformat()


def _bool(value: bool) -> str:
    return "t" if value else "f"


def _encoder(column: Column[Any]) -> Encode | None:
    """How one non-NULL value of ``column`` is written in an array literal (None: text, quoted)."""
    if isinstance(column.type, UTCDateTime):
        return _iso
    kind = column.type.python_type
    if kind is str:
        return None
    return _bool if kind is bool else str  # int, float, Decimal: str() parses back exactly


_ENCODERS = tuple(_encoder(column) for column in usage_events.columns)


def _arrays(rows: Sequence[Row]) -> tuple[str | None, ...]:
    """One PostgreSQL array literal per column, in ``_EVENT_COLUMNS`` order (transposed in C)."""
    columns = zip(*map(_values_of, rows), strict=True)
    return tuple(map(_array_text, _ENCODERS, columns))


def _array_text(encode: Encode | None, column: tuple[Any, ...]) -> str | None:
    """``{…}`` text for one column, or None when every value is NULL (``unnest`` pads a NULL
    array with NULLs). Text, parsed by PostgreSQL's array input, because asyncpg's binary array
    encoding checks every element against several ABCs in Python (~1 µs per value)."""
    if column.count(None) == len(column):
        return None
    if encode is None:
        quoted = {value: "NULL" if value is None else _quote(value) for value in set(column)}
        return "{" + ",".join(map(quoted.__getitem__, column)) + "}"
    if None in column:
        return "{" + ",".join("NULL" if v is None else encode(v) for v in column) + "}"
    return "{" + ",".join(map(encode, column)) + "}"


def _names(names: Iterable[str]) -> str:
    return ", ".join(map(quoted, names))


def _array_type(column: Column[object]) -> str:
    """The column's type as an array, unbounded (``VARCHAR(32)`` → ``VARCHAR[]``) so that the
    column's own limits are checked on insert instead of values being cut by a cast."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
    return column.type.compile(dialect=dialect).split("(")[0] + "[]"


# The statements below are assembled from the schema's own names only, never from data (S608).


def _insert_new_events() -> str:
    arrays = ", ".join(
        f"${i}::text::{_array_type(column)}"
        for i, column in enumerate(usage_events.columns, start=1)
    )
    # What the rollup sums read, and the task rollups' key.
    returned = ("event_id", "ts", *ROLLUP_KEY[1:], "task", "session", *SUMMED_COLUMNS)
    return (
        f"INSERT INTO usage_events ({_names(_EVENT_COLUMNS)})"  # noqa: S608
        f" SELECT * FROM unnest({arrays}) AS batch({_names(_EVENT_COLUMNS)})"
        f" ON CONFLICT (event_id) DO NOTHING RETURNING {_names(returned)}"
    )


def _sum_new_by_hour() -> str:
    keys = key_sql("postgresql")
    sums = [s.sql() for s in SUMS]
    named = [f"{expr} AS {quoted(name)}" for expr, name in zip(keys + sums, _ROLLED, strict=True)]
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    return f"SELECT {', '.join(named)} FROM new GROUP BY {by}"  # noqa: S608


def _sum_hourly_by_day() -> str:
    day = bucket(DAY_SQL, "postgresql", "hour")
    sums = ", ".join(f"sum({quoted(n)})" for n in ROLLUP_SUMS)
    by = ", ".join(str(i) for i in range(1, len(ROLLUP_KEY) + 1))
    return (
        f"SELECT {day}, {_names(ROLLUP_KEY[1:])}, {sums}"  # noqa: S608
        f" FROM hourly GROUP BY {by} ORDER BY {by}"
    )


def _upsert(table: str, key: Sequence[str], select: str) -> str:
    return (
        f"INSERT INTO {table} ({_names((*key, *ROLLUP_SUMS))}) {select}"
        f" ON CONFLICT ({_names(key)}) DO UPDATE SET {added_sql(table)}"
    )


def _task_upsert(table: str, key: Sequence[str], time: dict[str, str]) -> str:
    return (
        f"INSERT INTO {table} ({_names((key[0], *TASK_ROLLED))})"
        f" {task_rows_sql('postgresql', 'new', time)}"
        f" ON CONFLICT ({_names(key)}) DO UPDATE SET {task_added_sql(table, 'postgresql')}"
    )


def _session_upsert() -> str:
    return (
        f"INSERT INTO session_daily ({_names(('day', *SESSION_ROLLED))})"
        f" {session_rows_sql('postgresql', 'new')}"
        f" ON CONFLICT ({_names(SESSION_DAILY_KEY)})"
        f" DO UPDATE SET {task_added_sql('session_daily', 'postgresql')}"
    )


_ROLLED = (*ROLLUP_KEY, *ROLLUP_SUMS)
_BY_KEY = _names(ROLLUP_KEY)


@cache
def _postgresql_write_sql() -> str:
    """INSERT the batch (skipping known event ids), upsert the rollup of what was inserted,
    and answer the ids of the rows that were new."""
    hourly = f"SELECT * FROM hourly ORDER BY {_BY_KEY}"  # noqa: S608
    return (
        f"WITH new AS ({_insert_new_events()}),"  # noqa: S608
        f" hourly AS ({_sum_new_by_hour()}),"
        f" rolled AS ({_upsert('usage_hourly', ROLLUP_KEY, hourly)}),"
        f" rolled_daily AS ({_upsert('usage_daily', DAILY_KEY, _sum_hourly_by_day())}),"
        f" task_day AS ({_task_upsert('task_daily', TASK_DAILY_KEY, DAY_SQL)}),"
        f" task_month AS ({_task_upsert('task_monthly', TASK_MONTHLY_KEY, MONTH_SQL)}),"
        f" session_day AS ({_session_upsert()})"
        " SELECT event_id FROM new"
    )
