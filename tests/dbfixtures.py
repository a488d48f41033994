"""Database fixtures shared by every test that touches the store (a pytest plugin module).

``db_url`` gives each test a fresh, empty database, once on SQLite and once on PostgreSQL:
- SQLite: a file in the test's tmp_path.
- PostgreSQL: a throwaway ``tokenmeter_test_<random>`` database created on the server at
  ``TOKENMETER_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``) and dropped
  afterwards. If no server answers, the PostgreSQL variant is skipped, or fails when ``CI=true``.
``migrated_url`` is the same database after ``upgrade``; ``engine`` an engine on it.
Events to store come from ``tests.factories``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.aggregates import (
    COST_COLUMNS,
    COUNT_COLUMNS,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    TOKEN_KIND_COLUMNS,
)
from proxy.store.engine import make_engine, upgrade
from proxy.store.rollup import session_deltas, task_deltas
from proxy.store.tables import (
    session_daily,
    task_daily,
    task_monthly,
    usage_daily,
    usage_events,
    usage_hourly,
)

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def pg_server_url() -> str:
    """The PostgreSQL server tests may create databases on, as a plain ``postgresql://`` URL."""
    url = make_url(os.environ.get("TOKENMETER_TEST_PG", PG_DEFAULT))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_connection() -> asyncpg.Connection:
    server = pg_server_url()
    try:
        return await asyncpg.connect(server, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL not reachable at {server} (set TOKENMETER_TEST_PG): {exc!r}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


async def _pg_database() -> AsyncIterator[str]:
    name = f"tokenmeter_test_{secrets.token_hex(6)}"
    admin = await _admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(pg_server_url()).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: SQLite file or throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tokenmeter.db'}"
        return
    async for url in _pg_database():
        yield url


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh throwaway PostgreSQL database, for behaviour only PostgreSQL has."""
    async for url in _pg_database():
        yield url


async def terminate_backends(url: str) -> int:
    """Kill every server process connected to ``url``'s database, as a server restart would."""
    admin = await _admin_connection()
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            make_url(url).database,
        )
    finally:
        await admin.close()
    return killed


@pytest.fixture
async def migrated_url(db_url: str) -> str:
    """``db_url`` after ``upgrade`` to head."""
    await asyncio.to_thread(upgrade, db_url)
    return db_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(migrated_url)
    yield engine
    await engine.dispose()


SUMMED = ROLLUP_SUMS


async def raw_totals(engine: AsyncEngine) -> dict[str, Any]:
    """Totals over every raw event, summed in Python (independent of the rollup's SQL)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(usage_events))).mappings().all()
    totals: dict[str, Any] = dict.fromkeys(SUMMED, 0)
    for row in rows:
        totals["requests"] += 1
        totals["errors"] += row["status"] != "ok"
        totals["unpriced_requests"] += row["cost_usd"] is None
        if row["cost_usd"] is None:
            totals["unpriced_tokens"] += sum(row[name] for name in TOKEN_KIND_COLUMNS.values())
        for name in (*COUNT_COLUMNS, *COST_COLUMNS):
            totals[name] += row[name] or 0
    return totals


async def rollup_totals(engine: AsyncEngine) -> dict[str, Any]:
    """Totals over every ``usage_hourly`` row."""
    columns = [func.coalesce(func.sum(usage_hourly.c[name]), 0) for name in SUMMED]
    async with engine.connect() as conn:
        values = (await conn.execute(select(*columns))).one()
    return dict(zip(SUMMED, values, strict=True))


async def rollup_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every ``usage_hourly`` row, in key order."""
    key = [usage_hourly.c[name] for name in ROLLUP_KEY]
    async with engine.connect() as conn:
        result = await conn.execute(select(usage_hourly).order_by(*key))
    return [dict(row) for row in result.mappings()]


async def daily_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every ``usage_daily`` row, in key order."""
    key = [usage_daily.c.day, *(usage_daily.c[name] for name in ROLLUP_KEY[1:])]
    async with engine.connect() as conn:
        result = await conn.execute(select(usage_daily).order_by(*key))
    return [dict(row) for row in result.mappings()]


async def hourly_summed_by_day(engine: AsyncEngine) -> list[dict[str, Any]]:
    """``usage_hourly`` summed per UTC day in Python: what ``usage_daily`` must hold."""
    days: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in await rollup_rows(engine):
        day = row["hour"].replace(hour=0)
        key = (day, *(row[name] for name in ROLLUP_KEY[1:]))
        sums = days.setdefault(key, dict.fromkeys(SUMMED, 0))
        for name in SUMMED:
            sums[name] += row[name]
    return [
        {"day": key[0], **dict(zip(ROLLUP_KEY[1:], key[1:], strict=True)), **sums}
        for key, sums in sorted(days.items())
    ]


async def task_rollups(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every ``task_daily`` and ``task_monthly`` row, each in key order."""
    found = []
    async with engine.connect() as conn:
        for table in (task_daily, task_monthly):
            key = list(table.primary_key.columns)
            rows = (await conn.execute(select(table).order_by(*key))).mappings()
            found.append([dict(row) for row in rows])
    return found[0], found[1]


async def task_rollups_from_events(
    engine: AsyncEngine,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What ``task_rollups`` must hold: every raw event summed in Python per day and task key
    (``rollup.task_deltas``), and those days summed per month here."""
    async with engine.connect() as conn:
        events = [dict(row) for row in (await conn.execute(select(usage_events))).mappings()]
    daily = task_deltas(events)
    months: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in daily:
        month = row["day"].replace(day=1)
        key = (month, *(row[name] for name in list(row)[1:7]))
        was = months.get(key)
        if was is None:
            months[key] = {n: row[n] for n in (*SUMMED, "first_ts", "last_ts")}
            continue
        for name in SUMMED:
            was[name] += row[name]
        was["first_ts"] = min(was["first_ts"], row["first_ts"])
        was["last_ts"] = max(was["last_ts"], row["last_ts"])
    names = ("month", *list(daily[0])[1:7]) if daily else ()
    monthly = [dict(zip(names, key, strict=True)) | sums for key, sums in sorted(months.items())]
    return daily, monthly


async def session_rollup(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every ``session_daily`` row, in key order."""
    async with engine.connect() as conn:
        key = list(session_daily.primary_key.columns)
        rows = (await conn.execute(select(session_daily).order_by(*key))).mappings()
        return [dict(row) for row in rows]


async def session_rollup_from_events(engine: AsyncEngine) -> list[dict[str, Any]]:
    """What ``session_rollup`` must hold: every raw event summed in Python per day and session
    key (``rollup.session_deltas``)."""
    async with engine.connect() as conn:
        events = [dict(row) for row in (await conn.execute(select(usage_events))).mappings()]
    return session_deltas(events)
