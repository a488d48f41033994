"""The hourly rollup: how raw events are summed into ``usage_hourly``, live and from scratch.

Live: ``add_to_rollup(conn, rows)`` adds rows that were *just inserted* (the writer passes only
what ``INSERT … ON CONFLICT DO NOTHING RETURNING`` returned) with one upsert per rollup key, in the
caller's transaction, so a row is counted in the rollup exactly when it exists in
``usage_events``.

Offline: ``rebuild_rollups`` recomputes the rollup from raw events for every hour that still has
raw events (older hours, whose raw events ``purge_raw`` removed, keep their rollup rows).
``purge_raw`` cuts at an hour boundary so an hour is either wholly raw-backed or rollup-only.
Run both while no recorder is writing (the CLI does); they are maintenance, not the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from proxy.store.rows import Row
from proxy.store.tables import (
    COST_COLUMNS,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    TOKEN_COLUMNS,
    usage_events,
    usage_hourly,
)

RollupKey = tuple[datetime, str, str, str, str]


def dialect_insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that knows ``ON CONFLICT`` for the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def hour_of(ts: datetime) -> datetime:
    """The UTC hour an instant falls in: the rollup's time key."""
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _key(row: Row) -> RollupKey:
    return (
        hour_of(row["ts"]),
        row["provider"],
        row["model"] or "",
        row["user"] or "",
        row["team"] or "",
    )


def _zero() -> dict[str, Any]:
    return {name: Decimal(0) if name in COST_COLUMNS else 0 for name in ROLLUP_SUMS}


def _add(sums: dict[str, Any], row: Row) -> None:
    sums["requests"] += 1
    sums["errors"] += row["status"] != "ok"
    sums["unpriced_requests"] += row["cost_usd"] is None
    for name in TOKEN_COLUMNS:
        sums[name] += row[name]
    for name in COST_COLUMNS:
        sums[name] += row[name] or 0


def rollup_deltas(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """One ``usage_hourly`` row of sums per rollup key present in ``rows``."""
    by_key: dict[RollupKey, dict[str, Any]] = {}
    for row in rows:
        _add(by_key.setdefault(_key(row), _zero()), row)
    return [dict(zip(ROLLUP_KEY, key, strict=True)) | sums for key, sums in by_key.items()]


async def add_to_rollup(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """Add ``rows`` (already inserted in this transaction) to the rollup."""
    deltas = rollup_deltas(rows)
    if not deltas:
        return
    insert = dialect_insert(conn, usage_hourly)
    upsert = insert.on_conflict_do_update(
        index_elements=list(ROLLUP_KEY),
        set_={name: usage_hourly.c[name] + insert.excluded[name] for name in ROLLUP_SUMS},
    )
    await conn.execute(upsert, deltas)


def _hour_expr(dialect: str) -> ColumnElement[Any]:
    ts = usage_events.c.ts
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", ts)))
    # The text SQLAlchemy stores SQLite DATETIMEs as, truncated to the hour.
    return func.strftime("%Y-%m-%d %H:00:00.000000", ts)


def _rebuild_insert(dialect: str, since: datetime) -> Insert:
    e = usage_events.c
    hour = _hour_expr(dialect)
    keys = [hour, e.provider, *(func.coalesce(e[n], "") for n in ROLLUP_KEY[2:])]
    sums = [
        func.count(),
        func.sum(case((e.status != "ok", 1), else_=0)),
        func.sum(case((e.cost_usd.is_(None), 1), else_=0)),
        *(func.coalesce(func.sum(e[n]), 0) for n in TOKEN_COLUMNS + COST_COLUMNS),
    ]
    query = select(*keys, *sums).where(e.ts >= since).group_by(*keys)
    return usage_hourly.insert().from_select([*ROLLUP_KEY, *ROLLUP_SUMS], query)


async def rebuild_rollups(engine: AsyncEngine, since: datetime | None = None) -> int:
    """Recompute ``usage_hourly`` from raw events for every hour from ``since`` (default: the
    hour of the oldest raw event) onwards, in one transaction. Returns the rollup rows written."""
    async with engine.begin() as conn:
        if since is None:
            since = (await conn.execute(select(func.min(usage_events.c.ts)))).scalar()
            if since is None:
                return 0
        start = hour_of(since)
        await conn.execute(delete(usage_hourly).where(usage_hourly.c.hour >= start))
        result = await conn.execute(_rebuild_insert(conn.dialect.name, start))
    return result.rowcount


async def purge_raw(engine: AsyncEngine, older_than_days: int, now: datetime | None = None) -> int:
    """Delete raw events of whole hours older than ``older_than_days``; the rollup keeps them.
    Returns how many events were deleted."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    return await purge_raw_before(engine, cutoff)


async def purge_raw_before(engine: AsyncEngine, cutoff: datetime) -> int:
    """Delete raw events before the hour ``cutoff`` falls in, in one transaction (idempotent:
    a concurrent purge of the same range deletes each row once). Returns how many it deleted."""
    async with engine.begin() as conn:
        statement = delete(usage_events).where(usage_events.c.ts < hour_of(cutoff))
        result = await conn.execute(statement)
    return result.rowcount


async def oldest_raw(engine: AsyncEngine) -> datetime | None:
    """The time of the oldest raw event, or None when there is none."""
    async with engine.connect() as conn:
        oldest: datetime | None = (await conn.execute(select(func.min(usage_events.c.ts)))).scalar()
    return oldest
