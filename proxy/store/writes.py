"""The one write path for usage rows: idempotent insert plus rollup, in one transaction.

``write_batch`` inserts rows with ``INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING`` and adds
to ``usage_hourly`` only the rows that INSERT returned. Writing the same rows twice therefore
changes nothing the second time, which is what makes spool replay safe after a crash between
commit and spool removal.

- PostgreSQL: one statement per transaction, one round trip. The rows travel as one array per
  column (``unnest``; decimals as text, several times cheaper for asyncpg to encode), the INSERT
  is a data-modifying CTE, and the rollup upsert groups what it RETURNED by hour × provider ×
  model × user × team in SQL (the same sums as ``rollup.rebuild_rollups``), in key order so
  concurrent writers (replicas) lock rollup rows in the same order.
- SQLite: ``insert_new`` (one multi-row INSERT … RETURNING) then ``rollup.add_to_rollup``.

``is_transient`` tells a database that is away (retry later, spool meanwhile) from rows the
database refuses (retrying would never succeed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from operator import itemgetter

from sqlalchemy import Column
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.store.rollup import add_to_rollup, dialect_insert
from proxy.store.rows import Row
from proxy.store.tables import (
    COST_COLUMNS,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    TOKEN_COLUMNS,
    usage_events,
)
from proxy.store.types import Fixed


async def insert_new(conn: AsyncConnection, rows: Sequence[Row]) -> list[Row]:
    """Insert ``rows``; return those that were not in the table yet."""
    insert = dialect_insert(conn, usage_events)
    statement = insert.on_conflict_do_nothing(index_elements=["event_id"]).returning(
        usage_events.c.event_id
    )
    result = await conn.execute(statement, list(rows))
    inserted = set(result.scalars())
    return [row for row in rows if row["event_id"] in inserted]


async def write_batch(engine: AsyncEngine, rows: Sequence[Row]) -> int:
    """Store ``rows`` and their rollup atomically; return how many were new."""
    if not rows:
        return 0
    unique = _unique(rows)
    if engine.dialect.name == "postgresql":
        return await _write_postgresql(engine, unique)
    async with engine.begin() as conn:
        new = await insert_new(conn, unique)
        await add_to_rollup(conn, new)
    return len(new)


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
_TEXT_SENT = frozenset(c.name for c in usage_events.columns if isinstance(c.type, Fixed))
_values_of = itemgetter(*_EVENT_COLUMNS)


def _arrays(rows: Sequence[Row]) -> tuple[Sequence[object] | None, ...]:
    """One array per column, in ``_EVENT_COLUMNS`` order (transposed in C: this is per event)."""
    columns = zip(*map(_values_of, rows), strict=True)
    return tuple(_array(name, column) for name, column in zip(_EVENT_COLUMNS, columns, strict=True))


def _array(name: str, column: tuple[object, ...]) -> Sequence[object] | None:
    """None when every value is NULL (``unnest`` pads a NULL array with NULLs, and asyncpg has
    nothing to encode); decimals as text (asyncpg's binary NUMERIC encoding is much slower)."""
    if column.count(None) == len(column):
        return None
    if name in _TEXT_SENT:
        return [None if value is None else str(value) for value in column]
    return column


def _q(name: str) -> str:
    return f'"{name}"'


def _names(names: Iterable[str]) -> str:
    return ", ".join(map(_q, names))


def _array_type(column: Column[object]) -> str:
    """The column's type as an array, unbounded (``VARCHAR(32)`` → ``VARCHAR[]``) so that the
    column's own limits are checked on insert instead of values being cut by a cast."""
    if column.name in _TEXT_SENT:
        return "TEXT[]::NUMERIC[]"
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
    return column.type.compile(dialect=dialect).split("(")[0] + "[]"


# The statements below are assembled from the schema's own names only, never from data (S608).


def _insert_new_events() -> str:
    arrays = ", ".join(
        f"${i}::{_array_type(column)}" for i, column in enumerate(usage_events.columns, start=1)
    )
    returned = ("ts", "provider", "model", "user", "team", "status", *ROLLUP_SUMS[3:])
    return (
        f"INSERT INTO usage_events ({_names(_EVENT_COLUMNS)})"  # noqa: S608
        f" SELECT * FROM unnest({arrays}) AS batch({_names(_EVENT_COLUMNS)})"
        f" ON CONFLICT (event_id) DO NOTHING RETURNING {_names(returned)}"
    )


def _sum_new_by_rollup_key() -> str:
    hour = "date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    keys = [hour, "provider", *(f"coalesce({_q(n)}, '')" for n in ROLLUP_KEY[2:])]
    sums = [
        "count(*)",
        "count(*) FILTER (WHERE status <> 'ok')",
        "count(*) FILTER (WHERE cost_usd IS NULL)",
        *(f"coalesce(sum({_q(n)}), 0)" for n in (*TOKEN_COLUMNS, *COST_COLUMNS)),
    ]
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    return f"SELECT {', '.join(keys + sums)} FROM new GROUP BY {by} ORDER BY {by}"  # noqa: S608


def _upsert_rollup() -> str:
    added = ", ".join(f"{_q(n)} = usage_hourly.{_q(n)} + excluded.{_q(n)}" for n in ROLLUP_SUMS)
    return (
        f"INSERT INTO usage_hourly ({_names((*ROLLUP_KEY, *ROLLUP_SUMS))})"
        f" {_sum_new_by_rollup_key()}"
        f" ON CONFLICT ({_names(ROLLUP_KEY)}) DO UPDATE SET {added}"
    )


@cache
def _postgresql_write_sql() -> str:
    """INSERT the batch (skipping known event ids), upsert the rollup of what was inserted,
    and answer how many rows were new."""
    return (
        f"WITH new AS ({_insert_new_events()}), rolled AS ({_upsert_rollup()})"  # noqa: S608
        " SELECT count(*) FROM new"
    )
