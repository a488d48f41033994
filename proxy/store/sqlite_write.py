"""SQLite's write path: the batch through a temporary table, insert and both rollups in SQL.

Why: SQLAlchemy's Core executemany spends ~150 µs of Python per row on SQLite (parameter
building and type processing for 40-odd columns), on the proxy's own core. Here each row is
encoded once into the storage form SQLAlchemy's column types would have produced (UTC text
timestamps, money as integer 10⁻¹⁰ units, booleans as 0/1) and, in one transaction:

1. the batch goes into a per-connection temporary table with the driver's executemany (C);
2. rows already in ``usage_events`` are deleted from it (a replayed row: exactly once);
3. what is left is inserted into ``usage_events`` and summed by hour and by day into
   ``usage_hourly`` and ``usage_daily``, by day and month and task key into ``task_daily`` and
   ``task_monthly``, by day and session key into ``session_daily`` (``aggregates.SUMS``, as
   ``rollup.rebuild_rollups``).

SQLite has one writer at a time, so nothing can slip in between steps 2 and 3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Column
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy.store.aggregates import (
    DAILY_KEY,
    DAY_SQL,
    HOUR_SQL,
    MONTH_SQL,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    SESSION_DAILY_KEY,
    SESSION_ROLLED,
    SUMS,
    TASK_DAILY_KEY,
    TASK_MONTHLY_KEY,
    TASK_ROLLED,
    added_sql,
    key_sql,
    quoted,
    session_rows_sql,
    task_added_sql,
    task_rows_sql,
)
from proxy.store.rows import Row
from proxy.store.tables import usage_events
from proxy.store.types import Fixed, UTCDateTime, to_scaled
from proxy.usage import as_utc

_COLUMNS = tuple(column.name for column in usage_events.columns)


def _stored_time(value: datetime) -> str:
    """The text SQLAlchemy stores an aware datetime as on SQLite (UTC, microseconds)."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def _storage(column: Column[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column.type, UTCDateTime):
        return _stored_time
    if isinstance(column.type, Fixed):
        return to_scaled
    if column.type.python_type is bool:
        return int
    return None


_STORAGE = tuple(_storage(column) for column in usage_events.columns)


_CONVERTED = tuple((i, f) for i, f in enumerate(_STORAGE) if f is not None)
_values_of = itemgetter(*_COLUMNS)


def _encode(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Rows in column order, in storage form (only the dozen columns that need it converted)."""
    batch = []
    for row in rows:
        values = list(_values_of(row))
        for index, convert in _CONVERTED:
            if values[index] is not None:
                values[index] = convert(values[index])
        batch.append(tuple(values))
    return batch


def _names(names: Sequence[str]) -> str:
    return ", ".join(map(quoted, names))


# Statements are assembled from the schema's own names only, never from data (hence noqa S608).

_BATCH = "temp.tokenmeter_batch"
_CREATE_BATCH = (
    "CREATE TEMP TABLE IF NOT EXISTS tokenmeter_batch AS SELECT * FROM usage_events WHERE 0"
)
_PLACES = ", ".join("?" * len(_COLUMNS))
_FILL_BATCH = f"INSERT INTO {_BATCH} ({_names(_COLUMNS)}) VALUES ({_PLACES})"  # noqa: S608
_DROP_KNOWN = f"DELETE FROM {_BATCH} WHERE event_id IN (SELECT event_id FROM usage_events)"  # noqa: S608
_INSERT = f"INSERT INTO usage_events ({_names(_COLUMNS)}) SELECT {_names(_COLUMNS)} FROM {_BATCH}"  # noqa: S608
_CLEAR_BATCH = f"DELETE FROM {_BATCH}"  # noqa: S608
_NEW_IDS = f"SELECT event_id FROM {_BATCH}"  # noqa: S608


def _upsert(table: str, key_names: Sequence[str], time: dict[str, str]) -> str:
    keys = key_sql("sqlite", time)
    sums = [s.sql() for s in SUMS]
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    return (
        f"INSERT INTO {table} ({_names([*key_names, *ROLLUP_SUMS])})"  # noqa: S608
        f" SELECT {', '.join(keys + sums)} FROM {_BATCH} WHERE true"
        f" GROUP BY {by} ORDER BY {by}"
        f" ON CONFLICT ({_names(key_names)}) DO UPDATE SET {added_sql(table)}"
    )


def _task_upsert(table: str, key_names: Sequence[str], time: dict[str, str]) -> str:
    return (
        f"INSERT INTO {table} ({_names([key_names[0], *TASK_ROLLED])})"
        f" {task_rows_sql('sqlite', f'{_BATCH} WHERE true', time)}"
        f" ON CONFLICT ({_names(key_names)}) DO UPDATE SET {task_added_sql(table, 'sqlite')}"
    )


_HOURLY = _upsert("usage_hourly", ROLLUP_KEY, HOUR_SQL)
_DAILY = _upsert("usage_daily", DAILY_KEY, DAY_SQL)
_TASK_DAILY = _task_upsert("task_daily", TASK_DAILY_KEY, DAY_SQL)
_TASK_MONTHLY = _task_upsert("task_monthly", TASK_MONTHLY_KEY, MONTH_SQL)
_SESSION_DAILY = (
    f"INSERT INTO session_daily ({_names(['day', *SESSION_ROLLED])})"
    f" {session_rows_sql('sqlite', f'{_BATCH} WHERE true')}"
    f" ON CONFLICT ({_names(SESSION_DAILY_KEY)})"
    f" DO UPDATE SET {task_added_sql('session_daily', 'sqlite')}"
)


async def write_sqlite(conn: AsyncConnection, rows: Sequence[Row]) -> set[str]:
    """Store ``rows`` (unique event ids) and their rollups, in ``conn``'s transaction; return
    the ids of the rows that were new."""
    await conn.exec_driver_sql(_CREATE_BATCH)
    await conn.exec_driver_sql(_CLEAR_BATCH)  # an aborted earlier batch left nothing behind
    await conn.exec_driver_sql(_FILL_BATCH, _encode(rows))
    await conn.exec_driver_sql(_DROP_KNOWN)
    new = set((await conn.exec_driver_sql(_NEW_IDS)).scalars())
    await conn.exec_driver_sql(_INSERT)
    for statement in (_HOURLY, _DAILY, _TASK_DAILY, _TASK_MONTHLY, _SESSION_DAILY, _CLEAR_BATCH):
        await conn.exec_driver_sql(statement)
    return new
