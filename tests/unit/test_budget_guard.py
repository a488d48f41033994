"""Budget periods and the in-memory guard: roll-over, local spend until refreshed, fail open."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from proxy.budgets import Period, make_budget, period_bounds
from proxy.guard import BudgetGuard, OverBudget, View
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
