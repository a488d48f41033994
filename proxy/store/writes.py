"""The one write path for usage rows: idempotent insert plus rollup, in one transaction.

``write_batch`` inserts rows with ``INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING`` and adds
to ``usage_hourly`` and ``usage_daily`` only the rows that INSERT returned. Writing the same rows
twice therefore changes nothing the second time, which is what makes spool replay safe after a
crash between commit and spool removal.

- PostgreSQL: one statement per transaction, one round trip. The rows travel as one array per
  column, each sent as one array literal string (``$n::text::type[]``, then ``unnest``): far
  cheaper in Python than asyncpg's per-element binary array encoding. The INSERT
  is a data-modifying CTE, what it RETURNED is grouped by hour × provider × model × user × team
  in SQL (the same sums as ``rollup.rebuild_rollups``), and those hourly sums are upserted into
  ``usage_hourly`` and, summed again per day, into ``usage_daily``. Every upsert feeds its rows in
  key order and every writer runs the same statement, so concurrent writers (pipelined batches,
  replicas) take rollup row locks in one global order and cannot deadlock on them.
- SQLite: ``sqlite_write.write_sqlite``: the batch as one JSON parameter, the insert and both
  rollup upserts in SQL (SQLAlchemy's executemany cost ~150 µs of Python per row there).

``is_transient`` tells a database that is away (retry later, spool meanwhile) from rows the
database refuses (retrying would never succeed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.rows import Row
from proxy.store.sqlite_write import write_sqlite
from proxy.store.tables import (
    COST_COLUMNS,
    COUNTED_SUMS,
    DAILY_KEY,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    TOKEN_COLUMNS,
    usage_events,
)
from proxy.store.types import UTCDateTime


async def write_batch(engine: AsyncEngine, rows: Sequence[Row]) -> int:
    """Store ``rows`` and their rollup atomically; return how many were new."""
    if not rows:
        return 0
    unique = _unique(rows)
    if engine.dialect.name == "postgresql":
        return await _write_postgresql(engine, unique)
    return await write_sqlite(engine, unique)


def _unique(rows: Sequence[Row]) -> list[Row]:
    """First row per event_id, so a duplicate inside one batch is not counted twice."""
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row["event_id"], row)
    return list(first.values())


def is_transient(exc: BaseException) -> bool:
    """True when the database is unreachable or busy, rather than refusing the rows."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


# -- PostgreSQL: insert + rollup in one statement -----------------------------------------------


async def _write_postgresql(engine: AsyncEngine, rows: Sequence[Row]) -> int:
    async with engine.begin() as conn:
        result = await conn.exec_driver_sql(_postgresql_write_sql(), _arrays(rows))
        return int(result.scalar_one())


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


def _q(name: str) -> str:
    return f'"{name}"'


def _names(names: Iterable[str]) -> str:
    return ", ".join(map(_q, names))


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
    returned = ("ts", "provider", "model", "user", "team", "status", *TOKEN_COLUMNS, *COST_COLUMNS)
    return (
        f"INSERT INTO usage_events ({_names(_EVENT_COLUMNS)})"  # noqa: S608
        f" SELECT * FROM unnest({arrays}) AS batch({_names(_EVENT_COLUMNS)})"
        f" ON CONFLICT (event_id) DO NOTHING RETURNING {_names(returned)}"
    )


def _sum_new_by_hour() -> str:
    hour = "date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    keys = [hour, "provider", *(f"coalesce({_q(n)}, '')" for n in ROLLUP_KEY[2:])]
    sums = [
        *COUNTED_SUMS.values(),
        *(f"coalesce(sum({_q(n)}), 0)" for n in (*TOKEN_COLUMNS, *COST_COLUMNS)),
    ]
    named = [f"{expr} AS {_q(name)}" for expr, name in zip(keys + sums, _ROLLED, strict=True)]
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    return f"SELECT {', '.join(named)} FROM new GROUP BY {by}"  # noqa: S608


def _sum_hourly_by_day() -> str:
    day = "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    sums = ", ".join(f"sum({_q(n)})" for n in ROLLUP_SUMS)
    by = ", ".join(str(i) for i in range(1, len(ROLLUP_KEY) + 1))
    return (
        f"SELECT {day}, {_names(ROLLUP_KEY[1:])}, {sums}"  # noqa: S608
        f" FROM hourly GROUP BY {by} ORDER BY {by}"
    )


def _upsert(table: str, key: Sequence[str], select: str) -> str:
    added = ", ".join(f"{_q(n)} = {table}.{_q(n)} + excluded.{_q(n)}" for n in ROLLUP_SUMS)
    return (
        f"INSERT INTO {table} ({_names((*key, *ROLLUP_SUMS))}) {select}"
        f" ON CONFLICT ({_names(key)}) DO UPDATE SET {added}"
    )


_ROLLED = (*ROLLUP_KEY, *ROLLUP_SUMS)
_BY_KEY = ", ".join(_q(n) for n in ROLLUP_KEY)


@cache
def _postgresql_write_sql() -> str:
    """INSERT the batch (skipping known event ids), upsert the rollup of what was inserted,
    and answer how many rows were new."""
    hourly = f"SELECT * FROM hourly ORDER BY {_BY_KEY}"  # noqa: S608
    return (
        f"WITH new AS ({_insert_new_events()}),"  # noqa: S608
        f" hourly AS ({_sum_new_by_hour()}),"
        f" rolled AS ({_upsert('usage_hourly', ROLLUP_KEY, hourly)}),"
        f" rolled_daily AS ({_upsert('usage_daily', DAILY_KEY, _sum_hourly_by_day())})"
        " SELECT count(*) FROM new"
    )
