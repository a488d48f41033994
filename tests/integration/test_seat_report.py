"""The seat report and seat prices, on SQLite and PostgreSQL, against tests/seats_seed.py's
figures computed by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.people import parse_csv, save_people
from proxy.reports import Window, compensation_report, seat_report
from proxy.store.engine import make_engine
from proxy.store.tables import seats as seats_table
from tests.factories import sample_cost
from tests.seats_seed import NOW, OCTOBER, seed_seats


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(migrated_url)
    await seed_seats(engine)
    yield engine
    await engine.dispose()


async def test_break_even_per_seat_and_month_matches_the_hand_computation(
    engine: AsyncEngine,
) -> None:
    report = await seat_report(engine, 2, now=NOW)
    rows = {(row["user"], row["month"]): row for row in report.as_json()["rows"]}
    assert report.as_json()["months"] == ["2026-10", "2026-11"]
    alice = rows[("alice", "2026-10")]
    assert alice["plan"] == "max-20x"
    assert (alice["api_equivalent_usd"], alice["seat_usd"]) == ("350.000000", "200")
    assert (alice["value_per_price"], alice["seat_saves_usd"]) == ("1.7500", "150.000000")
    assert alice["verdict"] == "seat pays off"
    assert (alice["paid_usd"], alice["seat_requests"], alice["month_to_date"]) == (
        "0.000000",
        2,
        False,
    )
    bob = rows[("bob", "2026-10")]
    assert (bob["api_equivalent_usd"], bob["seat_usd"]) == ("40.000000", "100")
    assert (bob["value_per_price"], bob["seat_saves_usd"]) == ("0.4000", "-60.000000")
    assert bob["verdict"] == "API cheaper"
    assert bob["paid_usd"] == "25.000000"  # beside the seat's value, never added to it
    november = rows[("alice", "2026-11")]
    assert (november["api_equivalent_usd"], november["month_to_date"]) == ("60.000000", True)
    assert rows[("bob", "2026-11")]["api_equivalent_usd"] == "0.000000"


async def test_seat_traffic_without_a_seat_record_has_no_verdict(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(seats_table.delete().where(seats_table.c.user == "bob"))
    report = await seat_report(engine, 2, now=NOW)
    bob = next(
        row
        for row in report.rows
        if row.user == "bob" and row.month == OCTOBER.date().replace(day=1)
    )
    assert (bob.verdict, bob.price_usd, bob.value_usd) == ("no seat price", None, Decimal(40))


async def test_spend_vs_compensation_counts_the_seat_price_as_spend(engine: AsyncEngine) -> None:
    await save_people(
        engine,
        parse_csv(
            "user,team,annual_compensation,currency,effective_from\nalice,core,240000,USD,2026-01-01\n",
            NOW.date(),
        ),
    )
    window = Window(OCTOBER.replace(day=1), OCTOBER.replace(day=31))  # 30 days
    report = compensation_report(engine, window, {})
    data = (await report).as_json()
    alice = next(p for p in data["people"] if p["user"] == "alice")
    assert alice["spend_usd"] == "0.000000"  # nothing paid per token
    assert alice["api_equivalent_usd"] == "350.000000"  # shown, never added
    assert alice["seat_usd_per_year"] == "2400.00"
    assert alice["annualized_spend_usd"] == "2400.00"
    assert alice["spend_to_compensation"] == "0.0100"  # 2400 / 240000


async def test_reprice_keeps_seat_events_paid_zero_and_reprices_their_api_equivalent(
    engine: AsyncEngine,
) -> None:
    from proxy.pricing import Pricer
    from proxy.repricing import reprice

    await reprice(engine, Pricer(), OCTOBER.replace(day=1))
    report = await seat_report(engine, 2, now=NOW)
    bob = next(r for r in report.rows if r.user == "bob" and r.month.month == 10)
    # Sonnet 4.5 list price of 1,000 input, 90,000 cache read, 9,000 output: $0.165 (was $40)
    assert bob.value_usd == Decimal("0.165")
    assert bob.totals.cost_usd == sample_cost().total  # his API-key event: paid, at list price
    assert bob.totals.api_equivalent_requests == 1
