"""The daily rollup on SQLite and PostgreSQL: kept equal to the hourly one by every write path
(recorder, rebuild, reprice, migration backfill), and reports that read whole days from it and
edge hours from ``usage_hourly`` answer exactly what the hourly rollup alone answers."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import sum_columns, totals_of
from proxy.reports.usage import usage
from proxy.reports.window import Filters, conditions
from proxy.store import batches
from proxy.store.aggregates import ROLLUP_SUMS
from proxy.store.engine import make_engine, upgrade
from proxy.store.recorder import Recorder
from proxy.store.rollup import purge_raw, rebuild_rollups
from proxy.store.rows import Row, event_to_row
from proxy.store.spool import Spool
from proxy.store.tables import usage_daily, usage_events, usage_hourly
from proxy.store.writes import write_batch
from proxy.usage import Status, UsageEvent
from tests.dbfixtures import (
    daily_rows,
    hourly_summed_by_day,
    raw_totals,
    rollup_rows,
    rollup_totals,
    session_rollup,
    session_rollup_from_events,
    task_rollups,
    task_rollups_from_events,
)
from tests.factories import make_event

T0 = datetime(2026, 11, 2, tzinfo=UTC)
SEAT_SUMS = ("api_equivalent_usd", "api_equivalent_requests", "api_equivalent_tokens")  # 0008
OLD_SUMS = [name for name in ROLLUP_SUMS if name not in ("unpriced_tokens", *SEAT_SUMS)]
NEW_EVENT_COLUMNS = ("stop_reason", "usage_problem", "iterations")  # added by 0003
SEAT_EVENT_COLUMNS = ("billing", "api_equivalent_usd")  # added by 0008
USERS = ("ada", "bob", None)
MODELS = ("claude-sonnet-4-5", "claude-opus-4-5")


def _spread_events(n: int = 300, seed: int = 7) -> list[UsageEvent]:
    """``n`` events at random minutes over ten days, three people, two models, a few errors."""
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        at = T0 + timedelta(minutes=rng.randrange(10 * 24 * 60), seconds=rng.random() * 59)
        user = rng.choice(USERS)
        status = Status.UPSTREAM_ERROR if rng.random() < 0.05 else Status.OK
        events.append(make_event(started_at=at, user=user, model=rng.choice(MODELS), status=status))
    return events


def _rows(events: list[UsageEvent]) -> list[Row]:
    return [event_to_row(event) for event in events]


async def _raw_only(engine: AsyncEngine, group_by: str, f: Filters) -> list[tuple[str, Any]]:
    """The report over raw events alone: exactly the events with ``start <= ts < end``."""
    e = usage_events.c
    if group_by == "day":
        key: sa.ColumnElement[Any] = (
            sa.func.substr(e.ts, 1, 10)
            if engine.dialect.name == "sqlite"
            else sa.func.to_char(sa.func.timezone("UTC", e.ts), "YYYY-MM-DD")
        )
    else:
        key = sa.func.coalesce(e[group_by], "")
    query = sa.select(key, *sum_columns(usage_events)).group_by(key).order_by(key)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.where(*conditions(usage_events, f)))).all()
    return [("(none)" if row[0] == "" else str(row[0]), totals_of(row, 1)) for row in rows]


def _ranges() -> list[Filters]:
    """Ranges on and off day and hour boundaries, open on either side, one within a day."""
    mid = T0 + timedelta(days=2, hours=7, minutes=41, seconds=3)
    return [
        Filters(),
        Filters(mid, mid + timedelta(days=4, hours=9, minutes=2)),
        Filters(mid, mid + timedelta(hours=5)),
        Filters(mid, mid + timedelta(minutes=10)),
        Filters(T0 + timedelta(days=1), T0 + timedelta(days=6)),
        Filters(T0 + timedelta(days=1, hours=3), T0 + timedelta(days=6)),
        Filters(T0 + timedelta(days=1), T0 + timedelta(days=6, minutes=1)),
        Filters(start=mid),
        Filters(end=mid),
        Filters(mid, mid + timedelta(days=3), user="ada"),
        Filters(mid - timedelta(days=1), mid + timedelta(days=3), model=MODELS[1]),
    ]


async def test_daily_rollup_is_the_hourly_one_summed_per_day(engine: AsyncEngine) -> None:
    rows = _rows(_spread_events())
    await write_batch(engine, rows[:100])
    await write_batch(engine, rows[50:])  # overlaps: the repeated events count once
    daily = await daily_rows(engine)
    assert daily == await hourly_summed_by_day(engine)
    assert sum(row["requests"] for row in daily) == (await raw_totals(engine))["requests"] == 300
    assert {row["day"].day for row in daily} == set(range(2, 12))


async def test_reports_from_rollups_and_raw_edges_count_exactly_the_window(
    engine: AsyncEngine,
) -> None:
    """Whole days daily, whole hours hourly, partial edge hours from raw events: the same
    totals as raw events alone over exactly ``[start, end)``, for every range shape."""
    await write_batch(engine, _rows(_spread_events()))
    for filters in _ranges():
        for group_by in ("user", "model", "day"):
            expected = await _raw_only(engine, group_by, filters)
            got = await usage(engine, group_by, filters)
            assert [(k, t.as_json()) for k, t in got] == [(k, t.as_json()) for k, t in expected], (
                group_by,
                filters,
            )
    week = await usage(engine, "user", Filters(T0 + timedelta(hours=5), T0 + timedelta(days=7)))
    assert sum(t.requests for _, t in week) > 0


async def test_rebuild_restores_the_daily_rollup(engine: AsyncEngine) -> None:
    await write_batch(engine, _rows(_spread_events()))
    live = await daily_rows(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(usage_daily))
        await conn.execute(sa.delete(usage_hourly))
    await rebuild_rollups(engine)
    assert await daily_rows(engine) == live
    mid_week = T0 + timedelta(days=4, hours=13, minutes=30)
    async with engine.begin() as conn:
        await conn.execute(sa.update(usage_daily).values(requests=0))
    await rebuild_rollups(engine, since=mid_week)
    rebuilt = await daily_rows(engine)
    assert [r for r in rebuilt if r["day"] >= mid_week.replace(hour=0)] == [
        r for r in live if r["day"] >= mid_week.replace(hour=0)
    ]


async def test_purging_raw_events_leaves_the_daily_rollup(engine: AsyncEngine) -> None:
    await write_batch(engine, _rows(_spread_events()))
    daily = await daily_rows(engine)
    assert await purge_raw(engine, older_than_days=3, now=T0 + timedelta(days=10)) > 0
    assert await daily_rows(engine) == daily
    report = await usage(engine, "user", Filters())
    assert sum(t.requests for _, t in report) == 300


async def test_upgrade_backfills_the_daily_rollup_from_the_hourly_one(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url, "0001")
    hours = [T0 + timedelta(hours=5 * i) for i in range(12)]
    hourly = [
        {"hour": hour, "provider": "anthropic", "model": "m", "user": user, "team": ""}
        | dict.fromkeys(OLD_SUMS, 0)
        | {"requests": 2, "cost_usd": Decimal("1.25")}
        for hour in hours
        for user in ("ada", "")
    ]
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(usage_hourly), hourly)
        await asyncio.to_thread(upgrade, db_url)
        assert await daily_rows(engine) == await hourly_summed_by_day(engine)
        assert len(await daily_rows(engine)) == 2 * 3  # 60 hours from midnight: three days
    finally:
        await engine.dispose()


async def test_upgrade_backfills_unpriced_tokens_from_raw_events_where_it_can(db_url: str) -> None:
    """0003: an hour with raw events gets its unpriced tokens summed from them; a purged hour
    whose requests were all unpriced gets all its tokens; a purged mixed hour cannot know (0)."""
    await asyncio.to_thread(upgrade, db_url, "0002")
    raw_hour, all_unpriced, mixed = T0 + timedelta(hours=3), T0 + timedelta(hours=5), T0
    newer = (*NEW_EVENT_COLUMNS, *SEAT_EVENT_COLUMNS)
    old = [c.name for c in usage_events.columns if c.name not in newer]
    events = []
    for i, cost in enumerate((None, Decimal("2"), None)):
        row = event_to_row(make_event(started_at=raw_hour + timedelta(minutes=i), user=None))
        events.append({name: row[name] for name in old} | {"cost_usd": cost})
    unpriced_tokens = 2 * (120 + 2000 + 30_000 + 450)  # two unpriced make_event's, five kinds

    def hourly(hour: datetime, requests: int, unpriced: int, tokens: int) -> dict[str, Any]:
        key = {"hour": hour, "provider": "anthropic", "model": "claude-sonnet-4-5"}
        sums = dict.fromkeys(OLD_SUMS, 0) | {"requests": requests, "unpriced_requests": unpriced}
        return key | {"user": "", "team": "core"} | sums | {"input_tokens": tokens}

    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(usage_events), events)
            await conn.execute(
                sa.insert(usage_hourly),
                [
                    hourly(raw_hour, 3, 2, 0),
                    hourly(all_unpriced, 4, 4, 900),
                    hourly(mixed, 4, 1, 9),
                ],
            )
            await conn.execute(sa.delete(usage_daily))
            day = {k: v for k, v in hourly(T0, 11, 7, 909).items() if k != "hour"}
            await conn.execute(sa.insert(usage_daily), [day | {"day": T0}])
        await asyncio.to_thread(upgrade, db_url)
        got = {row["hour"]: row["unpriced_tokens"] for row in await rollup_rows(engine)}
        assert got == {raw_hour: unpriced_tokens, all_unpriced: 900, mixed: 0}
        assert [row["unpriced_tokens"] for row in await daily_rows(engine)] == [
            unpriced_tokens + 900
        ]
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_concurrent_writers_do_not_deadlock_on_the_rollups(pg_url: str) -> None:
    """Eight writers at once, each batch touching the same hourly and daily rows in its own
    order: PostgreSQL takes the row locks in key order, so nobody deadlocks or double counts."""
    await asyncio.to_thread(upgrade, pg_url)
    engine = make_engine(pg_url)
    events = _spread_events(2400, seed=11)
    rng = random.Random(3)
    batches = [_rows(events[i : i + 100]) for i in range(0, len(events), 100)]
    for batch in batches:
        rng.shuffle(batch)
    try:
        for _ in range(3):  # the first round inserts, the next ones are replays: no-ops
            written = await asyncio.gather(*(write_batch(engine, batch) for batch in batches))
            assert sum(written) in (len(events), 0)
        assert await rollup_totals(engine) == await raw_totals(engine)
        assert (await rollup_totals(engine))["requests"] == len(events)
        assert await daily_rows(engine) == await hourly_summed_by_day(engine)
        assert await task_rollups(engine) == await task_rollups_from_events(engine)
        assert await session_rollup(engine) == await session_rollup_from_events(engine)
    finally:
        await engine.dispose()


async def test_recorder_keeps_two_batches_in_flight(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL two batches are written at once; SQLite (one writer) takes turns; either
    way every event lands once in the raw table and both rollups."""
    busy, most = 0, 0

    async def slow_write(engine: AsyncEngine, rows: list[Row], *budgets: Any) -> int:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        try:
            await asyncio.sleep(0.03)
            return await write_batch(engine, rows, *budgets)
        finally:
            busy -= 1

    monkeypatch.setattr(batches, "write_batch", slow_write)
    recorder = Recorder(engine, Spool(tmp_path / "spool"), batch_size=20, flush_interval_s=0.01)
    await recorder.start()
    events = _spread_events(200, seed=5)
    for event in events:
        recorder.submit(event)
    await recorder.stop()
    assert most == (1 if engine.dialect.name == "sqlite" else 2)
    assert (await rollup_totals(engine))["requests"] == 200
    assert await daily_rows(engine) == await hourly_summed_by_day(engine)
    assert len(await rollup_rows(engine)) > 0
