"""Budget periods and the in-memory guard: roll-over, local spend until refreshed, fail open."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from proxy.budgets import CounterKey, Period, make_budget, period_bounds
from proxy.guard import BudgetGuard, OverBudget, Ticket, View
from proxy.usage import Attribution

ALICE = Attribution(user="alice", team="platform", source="header")
BODY = b'{"model":"claude-opus-4-8","max_tokens":32000,"messages":[]}'


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "tz", "at", "start", "end"),
    [
        ("day", "UTC", "2026-11-27 23:59", "2026-11-27 00:00", "2026-11-28 00:00"),
        ("week", "UTC", "2026-11-27 12:00", "2026-11-23 00:00", "2026-11-30 00:00"),
        ("month", "UTC", "2026-12-31 23:00", "2026-12-01 00:00", "2027-01-01 00:00"),
        # Paris is UTC+1 in winter: its November ends at 23:00 UTC on the 30th.
        ("month", "Europe/Paris", "2026-11-30 23:30", "2026-11-30 23:00", "2026-12-31 23:00"),
        ("day", "America/New_York", "2026-11-27 03:00", "2026-11-26 05:00", "2026-11-27 05:00"),
    ],
)
def test_period_bounds_follow_the_calendar_of_the_time_zone(
    period: str, tz: str, at: str, start: str, end: str
) -> None:
    zone = UTC if tz == "UTC" else ZoneInfo(tz)
    assert period_bounds(Period(period), _at(at), zone) == (_at(start), _at(end))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _estimator(provider: str, model: str, tokens_in: int, tokens_out: int) -> Decimal:
    return Decimal("0.000003") * tokens_in + Decimal("0.000015") * tokens_out


def _guard(clock: Clock, *, fail_closed: bool = False) -> BudgetGuard:
    return BudgetGuard(UTC, _estimator, now=clock, fail_closed=fail_closed)


def test_a_spent_daily_cap_opens_again_at_midnight() -> None:
    clock = Clock(_at("2026-11-27 23:59"))
    guard = _guard(clock)
    budget = make_budget("user", "alice", "day", "1")
    key = (*budget.key, _at("2026-11-27 00:00"))
    guard.apply(View([budget], {key: Decimal("1.00")}), guard.begin_refresh())

    with pytest.raises(OverBudget) as refused:
        guard.admit("anthropic", ALICE, BODY)
    assert refused.value.retry_after_s == 60
    assert str(refused.value) == (
        "spend limit reached (user alice, daily $1.00; resets 2026-11-28 00:00 UTC)"
    )

    clock.now = _at("2026-11-28 00:00")
    assert guard.admit("anthropic", ALICE, BODY) is not None


def test_in_flight_estimates_and_unwritten_spend_count_until_a_later_refresh() -> None:
    clock = Clock(_at("2026-11-27 12:00"))
    guard = _guard(clock)
    budget = make_budget("team", "platform", "month", "1")
    key = (*budget.key, _at("2026-11-01 00:00"))
    guard.apply(View([budget]), guard.begin_refresh())

    ticket = guard.admit("anthropic", ALICE, BODY)
    assert ticket is not None
    allowance = Decimal("0.000015") * 2048  # the output allowance, never max_tokens (32000)
    assert guard.used(key) == ticket.estimate == Decimal("0.000003") * (len(BODY) // 4) + allowance
    guard.settle(ticket, "e1", Decimal("0.40"))
    assert guard.used(key) == Decimal("0.40")
    guard.written(["e1"])
    # A refresh that began before the commit may not hold it: the local amount stays.
    early = guard.begin_refresh() - 1
    guard.apply(View([budget]), early)
    assert guard.used(key) == Decimal("0.40")
    guard.apply(View([budget], {key: Decimal("0.40")}), guard.begin_refresh())
    assert guard.used(key) == Decimal("0.40")  # once, from the database


def test_stale_view_fails_open_and_counts_or_fails_closed() -> None:
    class Counter:
        n = 0

        def count_budget_unenforced(self) -> None:
            self.n += 1

    counter = Counter()
    clock = Clock(_at("2026-11-27 12:00"))
    open_guard = BudgetGuard(UTC, _estimator, now=clock, unenforced=counter)
    assert open_guard.admit("anthropic", ALICE, BODY) is None  # never refreshed: unenforced
    assert counter.n == 1

    closed = _guard(clock, fail_closed=True)
    with pytest.raises(OverBudget, match="budget store is unavailable"):
        closed.admit("anthropic", ALICE, BODY)
    closed.apply(View([]), closed.begin_refresh())
    assert closed.admit("anthropic", ALICE, BODY) is None  # fresh, and no budget covers alice


def test_a_commit_teaches_the_replica_what_every_replica_spent() -> None:
    clock = Clock(_at("2026-11-27 12:00"))
    guard = _guard(clock)
    budget = make_budget("org", None, "month", "1")
    key = (*budget.key, _at("2026-11-01 00:00"))
    guard.apply(View([budget]), guard.begin_refresh())
    ticket = guard.admit("anthropic", ALICE, BODY)
    guard.settle(ticket, "e1", Decimal("0.10"))

    # This replica's 0.10 and another replica's 0.95, committed before this batch: over.
    guard.written(["e1"], {key: Decimal("1.05")})

    assert guard.used(key) == Decimal("1.05")
    with pytest.raises(OverBudget):
        guard.admit("anthropic", ALICE, BODY)
    guard.apply(View([budget], {key: Decimal("0.10")}), guard.begin_refresh())  # an older read
    assert guard.used(key) == Decimal("1.05")


class FakeLeases:
    """The database side of leases in memory: one budget's spent and reserved, shared by the
    guards given the same instance (replicas)."""

    def __init__(self, amount: Decimal) -> None:
        self.holder = "replica"
        self.amount = amount
        self.spent = Decimal(0)
        self.reserved = Decimal(0)
        self.takes = 0

    async def take(
        self, key: CounterKey, amount: Decimal, chunk: Decimal, need: Decimal
    ) -> tuple[Decimal, Decimal]:
        self.takes += 1
        for want, fits in ((chunk, chunk <= amount - self.spent - self.reserved), (need, None)):
            if fits or (fits is None and self.spent + self.reserved < amount):
                self.reserved += want
                return want, self.spent
        return Decimal(0), self.spent

    async def give_back(self, key: CounterKey, amount: Decimal) -> None:
        self.reserved -= amount

    async def renew(self) -> dict[CounterKey, Decimal]:
        return {}

    async def sweep(self, now: datetime) -> int:
        return 0


def _leased(clock: Clock, amount: str) -> tuple[BudgetGuard, FakeLeases, CounterKey]:
    guard = _guard(clock)
    leases = FakeLeases(Decimal(amount))
    guard.leases = leases
    budget = make_budget("org", None, "month", amount)
    guard.apply(View([budget]), guard.begin_refresh())
    return guard, leases, (*budget.key, _at("2026-11-01 00:00"))


async def _admit(guard: BudgetGuard) -> Ticket | None:
    ticket = guard.admit("anthropic", ALICE, BODY)
    if ticket is not None and ticket.short:
        await guard.secure(ticket)
    return ticket


async def test_far_from_the_cap_a_lease_admits_many_requests_per_round_trip() -> None:
    guard, leases, key = _leased(Clock(_at("2026-11-27 12:00")), "100")
    for n in range(500):
        ticket = await _admit(guard)
        guard.settle(ticket, f"e{n}", Decimal("0.01"))
    assert leases.takes == 1  # one round trip: the request's estimate and an eighth of the room
    assert leases.reserved == _estimate() + Decimal(100) / 8


def _estimate() -> Decimal:
    """What one request of ``BODY`` is estimated at (a guard without leases says)."""
    guard = _guard(Clock(_at("2026-11-27 12:00")))
    guard.apply(View([make_budget("org", None, "month", "1")]), guard.begin_refresh())
    ticket = guard.admit("anthropic", ALICE, BODY)
    assert ticket is not None
    return ticket.estimate


async def test_the_last_room_goes_to_one_request_then_the_spent_budget_refuses() -> None:
    clock = Clock(_at("2026-11-27 12:00"))
    guard, leases, key = _leased(clock, "0.05")
    estimate = _estimate()  # 2048 output tokens at $15/MTok and the input: over half the budget
    first = await _admit(guard)
    second = await _admit(guard)  # room left (0.05 - one estimate > 0): the last room
    assert first is not None
    assert second is not None
    assert leases.reserved == 2 * estimate > leases.amount
    leases.spent, leases.reserved = Decimal("0.06"), Decimal(0)  # both committed past the cap
    guard.settle(first, "e1", Decimal("0.03"))
    guard.settle(second, "e2", Decimal("0.03"))
    guard.written(["e1", "e2"], {key: Decimal("0.06")}, {key: 2 * estimate})
    with pytest.raises(OverBudget, match="spend limit reached"):
        await _admit(guard)
    assert guard.used(key) == Decimal("0.06")  # the refused request is counted nowhere
