"""Retention on SQLite and PostgreSQL: old raw events go, the rollup and recent events stay."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import reports
from proxy.store.engine import make_engine
from proxy.store.retention import Retention
from proxy.store.rows import event_to_row
from proxy.store.tables import usage_events
from proxy.store.writes import write_batch
from proxy.usage import UsageEvent
from tests.conftest import Proxy
from tests.dbfixtures import rollup_totals
from tests.factories import make_event, sample_cost

NOW = datetime(2026, 11, 26, 14, 35, tzinfo=UTC)


def _clock() -> datetime:
    return NOW


async def _seed(engine: AsyncEngine, now: datetime) -> None:
    """Six old events (100, 45 and 31 days ago) and three recent ones of task T-recent."""
    old = [now - timedelta(days=days, minutes=m) for days in (100, 45, 31) for m in (0, 90)]
    recent = [now - timedelta(days=days) for days in (29, 1, 0)]
    events = [_event(ts, "T-old") for ts in old] + [_event(ts, "T-recent") for ts in recent]
    await write_batch(engine, [event_to_row(event) for event in events])


def _event(started_at: datetime, task: str) -> UsageEvent:
    return make_event(started_at=started_at, task=task, session=None)


async def _raw_times(engine: AsyncEngine) -> list[datetime]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(usage_events.c.ts).order_by("ts"))).scalars())


async def test_purge_removes_old_raw_events_and_keeps_the_rollup(engine: AsyncEngine) -> None:
    await _seed(engine, NOW)
    before = await rollup_totals(engine)
    recent_before = await reports.task_view(engine, "T-recent")
    removed = await Retention(engine, 30, clock=_clock).purge()
    assert removed == 6
    assert await _raw_times(engine) == [NOW - timedelta(days=d) for d in (29, 1, 0)]
    assert await rollup_totals(engine) == before
    assert await reports.task_view(engine, "T-old") is None
    recent = await reports.task_view(engine, "T-recent")
    assert recent is not None
    assert recent_before is not None
    assert recent.totals.cost_usd == 3 * sample_cost().total
    assert recent.as_json() == recent_before.as_json()


async def test_reports_over_purged_months_still_count_every_request(engine: AsyncEngine) -> None:
    await _seed(engine, NOW)
    await Retention(engine, 30, clock=_clock).purge()
    window = reports.Filters(NOW - timedelta(days=365), NOW + timedelta(minutes=1))
    rows = await reports.usage(engine, "user", window)  # the last event is at NOW: inside
    total = reports.total_of(rows)
    assert total.requests == 9
    assert total.cost_usd == 9 * sample_cost().total


async def test_purge_cuts_at_a_whole_hour(engine: AsyncEngine) -> None:
    # 30 days before 14:35 is 14:35; the hour 14:00–15:00 of that day is kept whole.
    edge = [NOW - timedelta(days=30, minutes=m) for m in (20, 40)]  # 14:15 and 13:55
    await write_batch(engine, [event_to_row(make_event(started_at=ts)) for ts in edge])
    assert await Retention(engine, 30, clock=_clock).purge() == 1
    assert await _raw_times(engine) == [edge[0]]


async def test_purging_twice_or_concurrently_deletes_each_event_once(
    engine: AsyncEngine, migrated_url: str
) -> None:
    await _seed(engine, NOW)
    before = await rollup_totals(engine)
    other = make_engine(migrated_url)
    try:
        counts = await asyncio.gather(
            Retention(engine, 30, clock=_clock).purge(),
            Retention(other, 30, clock=_clock).purge(),
        )
    finally:
        await other.dispose()
    assert sum(counts) == 6
    assert await Retention(engine, 30, clock=_clock).purge() == 0
    assert len(await _raw_times(engine)) == 3
    assert await rollup_totals(engine) == before


async def test_started_retention_purges_at_once_and_logs_it(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    await _seed(engine, NOW)
    retention = Retention(engine, 30, clock=_clock)
    with caplog.at_level(logging.INFO, logger="tokenmeter.store.retention"):
        await retention.start()
        await _wait_until(engine, lambda times: len(times) == 3)
        await retention.stop()
    assert "removed 6 raw events" in caplog.text


async def test_without_a_setting_nothing_is_purged(engine: AsyncEngine) -> None:
    await _seed(engine, NOW)
    retention = Retention(engine, None, clock=_clock)
    await retention.start()
    await asyncio.sleep(0.1)
    await retention.stop()
    assert len(await _raw_times(engine)) == 9
    assert not retention.enabled


async def test_an_unreachable_database_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing")
    retention = Retention(engine, 30, interval_s=0.05, clock=_clock)
    try:
        with caplog.at_level(logging.ERROR, logger="tokenmeter.store.retention"):
            await retention.start()
            await asyncio.sleep(0.3)
            await retention.stop()
    finally:
        await engine.dispose()
    assert caplog.text.count("purge failed") >= 2


async def test_the_running_proxy_purges_with_the_setting(
    engine: AsyncEngine, migrated_url: str, make_proxy: Callable[..., Proxy]
) -> None:
    now = datetime.now(UTC)
    await _seed(engine, now)
    proxy = make_proxy(database_url=migrated_url, retention_days=30, migrate_on_start=False)
    await _wait_until(engine, lambda times: len(times) == 3)
    start = (now - timedelta(days=365)).isoformat()
    usage = await asyncio.to_thread(
        proxy.http.get, "/api/v1/usage", params={"group_by": "user", "start": start}
    )
    assert usage.json()["total"]["requests"] == 9
    assert (await asyncio.to_thread(proxy.task, "T-recent", 3))["requests"] == 3


async def _wait_until(engine: AsyncEngine, condition: Callable[[list[datetime]], bool]) -> None:
    for _ in range(500):
        if condition(await _raw_times(engine)):
            return
        await asyncio.sleep(0.02)
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(usage_events))).scalar()
    raise AssertionError(f"retention did not purge within 10 s ({count} raw events)")
