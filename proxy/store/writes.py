"""The one write path for usage rows: idempotent insert plus rollup, in one transaction.

``write_batch`` inserts rows with ``INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING
event_id`` (a single multi-row INSERT; SQLAlchemy splits it only past the driver's bind-parameter
limit) and adds to ``usage_hourly`` only the rows that INSERT returned. Writing the same rows
twice therefore changes nothing the second time, which is what makes spool replay safe after a
crash between commit and spool removal.

``is_transient`` tells a database that is away (retry later, spool meanwhile) from rows the
database refuses (retrying would never succeed).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.store.rollup import add_to_rollup, dialect_insert
from proxy.store.rows import Row
from proxy.store.tables import usage_events


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
    async with engine.begin() as conn:
        new = await insert_new(conn, _unique(rows))
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
