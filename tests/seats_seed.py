"""Seat holders with known API-equivalent dollars, and the seat report computed from it by hand.

Seat traffic is recorded as the proxy records it: billing ``subscription``, $0 paid, the list
price in ``api_equivalent_usd`` (set per event here, so every figure is plain arithmetic).

| user  | seat (plan, $/month) | seat traffic in October 2026 | paid API-key traffic |
|-------|----------------------|------------------------------|----------------------|
| alice | max-20x, 200         | $230 + $120 = $350           | none                 |
| bob   | max-5x, 100          | $40                          | $25 (October)        |

By hand, October: alice 350 / 200 = 1.75, the seat saves $150 (pays off); bob 40 / 100 = 0.40,
the API would have been $60 cheaper. November (to the 15th): alice $60 of seat traffic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import seats
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import Cost, Usage, UsageEvent
from tests.factories import make_event

OCTOBER = datetime(2026, 10, 10, 12, tzinfo=UTC)
NOVEMBER = datetime(2026, 11, 5, 12, tzinfo=UTC)
NOW = datetime(2026, 11, 15, tzinfo=UTC)
SEATS_CSV = "user,usd_per_month,plan\nalice,200,max-20x\nbob,100,max-5x\n"


def seat_event(user: str, dollars: str, at: datetime) -> UsageEvent:
    """A seat exchange worth ``dollars`` at list price, paid $0."""
    cost = Cost(Decimal(0), {}, Decimal(0), "test-prices", api_equivalent=Decimal(dollars))
    return make_event(
        started_at=at,
        user=user,
        team="core",
        task=None,
        session=None,
        key_fingerprint=f"fp_seat_{user}",
        billing="subscription",
        usage=Usage(input=1000, cache_read=90_000, output=9000),
        cost=cost,
    )


def paid_event(user: str, dollars: str, at: datetime) -> UsageEvent:
    cost = Cost(Decimal(dollars), {"input": Decimal(dollars)}, Decimal(dollars), "test-prices")
    return make_event(
        started_at=at, user=user, team="core", task=None, billing="api_key", cost=cost
    )


def seat_events() -> list[UsageEvent]:
    return [
        seat_event("alice", "230", OCTOBER),
        seat_event("alice", "120", OCTOBER.replace(day=20)),
        seat_event("bob", "40", OCTOBER),
        paid_event("bob", "25", OCTOBER),
        seat_event("alice", "60", NOVEMBER),
    ]


async def seed_seats(engine: AsyncEngine) -> None:
    await write_batch(engine, [event_to_row(e) for e in seat_events()])
    await seats.save_seats(engine, seats.parse_csv(SEATS_CSV, NOW))
