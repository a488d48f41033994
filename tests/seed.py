"""Seed data with known tokens, dollars and salaries, and the figures computed from it by hand.

Window: the 30 days up to END. Costs are set per event (not priced) so every expected figure
below is plain arithmetic a reader can check:

| user | people row (team, pay)          | events in window      | tokens    |
|------|----------------------------------|-----------------------|-----------|
| ada  | core, 200000 USD (240000 from Dec) | 3 × $1000           | 3 000 000 |
| bob  | core, 150000 USD                 | 1 × $600              |   500 000 |
| cyd  | web, 120000 USD                  | 1 × $300              |   200 000 |
| dee  | web, 100000 EUR                  | none                  |         0 |
| zed  | no people row                    | 1 × $150              |   100 000 |
| —    | (no user)                        | 1 × $50               |    50 000 |
Plus one ada event before the window ($999, must not count).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import people
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import Cost, Usage, UsageEvent
from tests.factories import make_event

END = datetime(2026, 11, 30, tzinfo=UTC)
START = END - timedelta(days=30)

PEOPLE_CSV = """user,name,team,annual_compensation,currency,effective_from
ada,Ada Lovelace,core,200000,USD,2026-01-01
ada,Ada Lovelace,core,240000,USD,2026-12-01
bob,Bob Babbage,core,150000,USD,2026-01-01
cyd,Cyd Charisse,web,120000,USD,2026-01-01
dee,Dee Dee,web,100000,EUR,2026-01-01
"""
EUR_RATE = {"EUR": Decimal("1.08")}


def usage_of(tokens: int) -> Usage:
    """``tokens`` split 1 % input, 94 % cache read, 5 % output."""
    return Usage(
        input=tokens // 100, cache_read=tokens * 94 // 100, output=tokens - tokens * 95 // 100
    )


def event(
    user: str | None, dollars: str, tokens: int, at: datetime, task: str | None = None
) -> UsageEvent:
    sticker = Decimal(dollars) * 4
    cost = Cost(Decimal(dollars), {"input": Decimal(dollars)}, sticker, "test-prices")
    return make_event(
        started_at=at,
        user=user,
        team="ignored",
        task=task,
        session=None,
        usage=usage_of(tokens),
        cost=cost,
    )


def seed_events() -> list[UsageEvent]:
    t = START + timedelta(days=10)
    return [
        event("ada", "1000", 1_000_000, t, task="T-1"),
        event("ada", "1000", 1_000_000, t + timedelta(hours=1), task="T-1"),
        event("ada", "1000", 1_000_000, t + timedelta(days=5), task="T-2"),
        event("bob", "600", 500_000, t, task="T-2"),
        event("cyd", "300", 200_000, t + timedelta(days=1), task="T-3"),
        event("zed", "150", 100_000, t + timedelta(days=2)),
        event(None, "50", 50_000, t + timedelta(days=3)),
        event("ada", "999", 9_000_000, START - timedelta(days=1), task="T-old"),
    ]


async def seed(engine: AsyncEngine, *, with_people: bool = True) -> None:
    await write_batch(engine, [event_to_row(e) for e in seed_events()])
    if with_people:
        await people.save_people(engine, people.parse_csv(PEOPLE_CSV, END.date()))
