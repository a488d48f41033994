"""Repricing stored events after a price fix, on SQLite and PostgreSQL: exact, idempotent, and
the rollup follows.

The stored events carry the under-reporting bug issue 3 names: 1-hour cache writes priced at the
5-minute rate. claude-opus-4-7 list prices: $5 input, $6.25 5 m write, $10 1 h write, $0.50
read, $25 output per MTok.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.pricing import Pricer, load_overrides
from proxy.repricing import reprice
from proxy.store.rows import event_to_row
from proxy.store.tables import usage_events
from proxy.store.writes import write_batch
from proxy.usage import Cost, Iteration, ResponseFacts, Usage, UsageEvent
from tests.dbfixtures import (
    daily_rows,
    hourly_summed_by_day,
    raw_totals,
    rollup_totals,
    session_rollup,
    session_rollup_from_events,
    task_rollups,
    task_rollups_from_events,
)
from tests.factories import make_event

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
USAGE = Usage(input=2_000, cache_write_1h=100_000, cache_read=400_000, output=1_000)
# Right: 2000×5 + 100000×10 + 400000×0.5 + 1000×25 = 10 000 + 1 000 000 + 200 000 + 25 000 µ$
RIGHT = Decimal("1.235")
WRONG = Decimal("0.86")  # the 1 h writes at $6.25: 1 000 000 − 375 000 µ$ less
STICKER = Decimal("2.535")  # 502 000 × $5 + 1000 × $25


def _wrong_cost() -> Cost:
    by_kind = {
        "input": Decimal("0.01"),
        "cache_write_5m": Decimal(0),
        "cache_write_1h": Decimal("0.625"),
        "cache_read": Decimal("0.2"),
        "output": Decimal("0.025"),
        "web_search": Decimal(0),
    }
    return Cost(WRONG, by_kind, STICKER, "old-prices", "claude-opus-4-7")


async def _seed(engine: AsyncEngine) -> None:
    events = [
        make_event(
            started_at=T0 + timedelta(minutes=30 * i),
            model="claude-opus-4-7",
            usage=USAGE,
            cost=_wrong_cost(),
        )
        for i in range(5)
    ]
    # Priced before a price existed for it: recorded as unknown, never $0.
    events.append(make_event(started_at=T0, model="claude-opus-4-7", usage=USAGE, priced=False))
    events.append(make_event(started_at=T0, model="mystery-9", usage=USAGE, priced=False))
    events.append(
        make_event(
            started_at=T0 - timedelta(days=3),
            model="claude-opus-4-7",
            usage=USAGE,
            cost=_wrong_cost(),
        )
    )
    await write_batch(engine, [event_to_row(e) for e in events])


async def _costs(engine: AsyncEngine) -> list[tuple[Decimal | None, str | None]]:
    query = select(usage_events.c.cost_usd, usage_events.c.price_version).order_by(
        usage_events.c.ts, usage_events.c.event_id
    )
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]


async def test_dry_run_prints_before_and_after_and_writes_nothing(engine: AsyncEngine) -> None:
    await _seed(engine)
    stored = await _costs(engine)
    result = await reprice(engine, Pricer(), T0, dry_run=True)
    assert (result.events, result.changed, result.cost_changed) == (7, 6, 6)
    assert result.before.cost_usd == 5 * WRONG
    assert result.after.cost_usd == 6 * RIGHT
    assert (result.before.unpriced, result.after.unpriced) == (2, 1)  # mystery-9 stays unknown
    assert result.by_model["mystery-9"][1].unpriced == 1
    assert await _costs(engine) == stored


async def test_reprice_fixes_costs_and_rollup_and_is_idempotent(engine: AsyncEngine) -> None:
    await _seed(engine)
    pricer = Pricer()
    first = await reprice(engine, pricer, T0, batch_size=2)  # several batches
    assert first.changed == 6
    costs = await _costs(engine)
    assert costs[0] == (WRONG, "old-prices")  # before --since: untouched
    assert sorted(c for c, _ in costs[1:] if c is not None) == [RIGHT] * 6
    assert {v for c, v in costs[1:] if c is not None} == {pricer.version}
    raw, rolled = await raw_totals(engine), await rollup_totals(engine)
    assert rolled == raw
    assert raw["cost_usd"] == WRONG + 6 * RIGHT
    assert raw["cost_cache_write_1h_usd"] == Decimal("0.625") + 6 * Decimal(1)
    assert raw["unpriced_requests"] == 1

    assert await daily_rows(engine) == await hourly_summed_by_day(engine)
    assert await task_rollups(engine) == await task_rollups_from_events(engine)
    assert await session_rollup(engine) == await session_rollup_from_events(engine)

    second = await reprice(engine, pricer, T0)
    assert (second.events, second.changed, second.cost_changed) == (7, 0, 0)
    assert second.before.cost_usd == second.after.cost_usd == 6 * RIGHT
    assert await rollup_totals(engine) == raw
    assert await daily_rows(engine) == await hourly_summed_by_day(engine)
    assert await task_rollups(engine) == await task_rollups_from_events(engine)
    assert await session_rollup(engine) == await session_rollup_from_events(engine)


def _live(facts: ResponseFacts, minute: int) -> UsageEvent:
    """An event as the proxy records it: priced by the live pricer."""
    event = make_event(started_at=T0 + timedelta(minutes=minute), facts=facts)
    event.cost = Pricer().price(event)
    return event


ADVISED = ResponseFacts(
    Usage(input=2_583, cache_read=412, output=2_143),
    "claude-sonnet-4-6",
    iterations=(
        Iteration("message", "claude-sonnet-4-6", Usage(input=412, output=89)),
        Iteration("advisor_message", "claude-opus-4-8", Usage(input=823, output=1_612)),
        Iteration("message", "claude-sonnet-4-6", Usage(input=1_348, cache_read=412, output=442)),
    ),
)
REFUSED = ResponseFacts(Usage(input=412), "claude-fable-5", stop_reason="refusal")
CAPPED = ResponseFacts(
    Usage(input=3, output=10**12), "claude-opus-4-8", problems=("usage_over_cap",)
)
ADVISOR_PART = Decimal(823 * 5 + 1_612 * 25) / 1_000_000  # claude-opus-4-8 at list prices


async def test_reprice_replays_iterations_refusals_and_flags_exactly(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    events = [_live(facts, i) for i, facts in enumerate((ADVISED, REFUSED, CAPPED))]
    await write_batch(engine, [event_to_row(event) for event in events])
    assert [e.cost.total if e.cost else None for e in events][1:] == [Decimal(0), None]
    same = await reprice(engine, Pricer(), T0)
    assert (same.events, same.cost_changed) == (3, 0)  # the stored columns say it all
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[discount]]\nprovider = "anthropic"\nmodels = "claude-opus-*"\npercent = 50\n'
        'effective_from = 2026-01-01\nsource = "test"\n'
    )
    cheaper = await reprice(engine, Pricer(load_overrides(prices)), T0)
    assert cheaper.cost_changed == 1
    assert events[0].cost is not None
    assert cheaper.after.cost_usd == events[0].cost.total - ADVISOR_PART / 2  # the advisor step
    assert cheaper.after.unpriced == 1  # the capped event stays unknown
    assert await rollup_totals(engine) == await raw_totals(engine)
