"""The store on SQLite and PostgreSQL: rows read back exactly, idempotent writes, the rollup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.rollup import purge_raw, rebuild_rollups
from proxy.store.rows import event_to_row
from proxy.store.tables import usage_events, usage_hourly
from proxy.store.writes import write_batch
from proxy.usage import Cost, Status, Usage
from tests.dbfixtures import raw_totals, rollup_rows, rollup_totals
from tests.factories import make_event, sample_cost

T0 = datetime(2026, 11, 26, 14, 5, tzinfo=UTC)


def _mixed_rows() -> list[dict[str, object]]:
    """Events over three hours, two people, an anonymous one, an unpriced one and an error."""
    events = [
        make_event(started_at=T0 + timedelta(minutes=20 * i), user=("ada", "bob")[i % 2])
        for i in range(9)
    ]
    events.append(make_event(started_at=T0, user=None, team=None))
    events.append(make_event(started_at=T0, priced=False, model="mystery-1"))
    events.append(make_event(started_at=T0, status=Status.UPSTREAM_ERROR, usage=Usage()))
    return [event_to_row(event) for event in events]


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(usage_events))).scalar_one()


async def test_written_row_reads_back_exactly(engine: AsyncEngine) -> None:
    row = event_to_row(make_event())
    assert await write_batch(engine, [row]) == 1
    async with engine.connect() as conn:
        stored = (await conn.execute(select(usage_events))).mappings().one()
    assert dict(stored) == row
    assert stored["ts"] == datetime(2026, 11, 26, 14, 5, 7, 123456, tzinfo=UTC)
    assert stored["cost_usd"] == Decimal("0.033610")


async def test_writing_the_same_events_twice_counts_them_once(engine: AsyncEngine) -> None:
    rows = _mixed_rows()
    assert await write_batch(engine, rows) == len(rows)
    before = await rollup_totals(engine)
    assert await write_batch(engine, rows[:5] + rows[:5]) == 0
    assert await _count(engine) == len(rows)
    assert await rollup_totals(engine) == before


async def test_rollup_sums_equal_raw_sums(engine: AsyncEngine) -> None:
    rows = _mixed_rows()
    await write_batch(engine, rows[:4])
    await write_batch(engine, rows[4:])
    totals = await rollup_totals(engine)
    assert totals == await raw_totals(engine)
    assert (totals["requests"], totals["errors"], totals["unpriced_requests"]) == (12, 1, 1)
    assert totals["cost_usd"] == 11 * sample_cost().total  # unpriced adds nothing, not $0 rows
    assert totals["cache_read_tokens"] == 11 * 30_000


async def test_rollup_keys_by_hour_with_empty_string_for_unknown(engine: AsyncEngine) -> None:
    await write_batch(engine, _mixed_rows())
    rows = await rollup_rows(engine)
    anonymous = [r for r in rows if r["user"] == ""]
    assert len(anonymous) == 1
    assert anonymous[0]["hour"] == datetime(2026, 11, 26, 14, tzinfo=UTC)
    assert anonymous[0]["team"] == ""
    assert {r["hour"].hour for r in rows} == {14, 15, 16}


async def test_rebuild_rollups_agrees_with_live_rollup(engine: AsyncEngine) -> None:
    await write_batch(engine, _mixed_rows())
    live = await rollup_rows(engine)
    async with engine.begin() as conn:
        await conn.execute(delete(usage_hourly))
    assert await rebuild_rollups(engine) == len(live)
    assert await rollup_rows(engine) == live


async def test_purge_keeps_history_in_the_rollup(engine: AsyncEngine) -> None:
    old = [event_to_row(make_event(started_at=T0 - timedelta(days=100))) for _ in range(3)]
    await write_batch(engine, old + _mixed_rows())
    before = await rollup_totals(engine)
    assert await purge_raw(engine, older_than_days=30, now=T0) == 3
    assert await _count(engine) == 12
    await rebuild_rollups(engine)
    assert await rollup_totals(engine) == before


async def test_money_adds_up_to_the_last_decimal(engine: AsyncEngine) -> None:
    cents = [Decimal("0.1"), Decimal("0.2"), Decimal("0.0000000001")] * 100
    rows = [
        event_to_row(make_event(cost=Cost(dollars, {"output": dollars}, dollars, "v")))
        for dollars in cents
    ]
    await write_batch(engine, rows)
    totals = await rollup_totals(engine)
    assert totals["cost_usd"] == Decimal("30.00000001")
    assert (await raw_totals(engine))["cost_output_usd"] == Decimal("30.00000001")


async def test_sub_scale_dollars_round_the_same_on_both_databases(engine: AsyncEngine) -> None:
    half = Decimal("0.00000000005")
    await write_batch(engine, [event_to_row(make_event(cost=Cost(half, {}, half, "v")))])
    async with engine.connect() as conn:
        stored = (await conn.execute(select(usage_events.c.cost_usd))).scalar_one()
    assert stored == Decimal("0.0000000001")
