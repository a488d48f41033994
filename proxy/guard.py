"""The hard-cap check on the hot path: an in-memory view of every budget's period-to-date spend.

``BudgetGuard`` answers ``admit(provider, attribution, body)`` with dict lookups and a few
``Decimal`` additions: no database round trip, no I/O. What it knows per budget and period
(a ``CounterKey``) is

- ``counted``: the database's counter (``budget_counters``), replaced by every refresh
  (``store.budgets.BudgetRefresher``, at least once a second), which every replica shares;
- ``local``: this replica's own spend the counters do not hold yet: the estimates of requests in
  flight (input tokens from the body's length at the model's input rate plus an output
  allowance of the request's ``max_tokens`` capped at ``OUTPUT_ALLOWANCE_TOKENS``, never the raw
  ``max_tokens``), then each finished request's priced cost until its
  row is committed (``written``) *and* a refresh that began after the commit has landed.

A hard budget whose ``counted + local`` has reached its amount refuses with ``OverBudget``
(the forwarder answers 429 ``billing_error``).

So that replicas together never pass a hard cap by more than one request, each replica spends a
hard budget only out of its **lease** (``held``): a part of the budget reserved for it in the
database (``store.budgets.Leases``). A request whose estimate the lease covers is admitted with
dict lookups; one it does not cover is ``short``, and the forwarder awaits ``secure(ticket)``,
which grows the lease by a chunk (an eighth of the room the budget has left, so round trips are
rare far from the cap and only the last requests of a budget pay one each), or by what the
request needs while any room is left (the one request that may end past the cap), or waits for
in-flight requests and idle leases to give room back, or refuses once the budget is spent.
Committed rows move their cost from the lease to ``spent_usd`` (``written``'s ``released``);
``maintain()`` (from the refresher) gives back unused leases that went idle or that others need,
renews this replica's leases, and sweeps those of replicas that stopped renewing theirs.

When the view is stale (no successful refresh for ``stale_after_s``, or none yet), budgets are
unenforced: requests pass (counted by ``Unenforced`` and logged once per outage) unless
``fail_closed``, in which case every metered request is refused with a ``billing_error`` saying
why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Protocol

from proxy.budgets import Budget, CounterKey, Period, Scope, limit_message, period_bounds
from proxy.usage import Attribution

log = logging.getLogger("tokenmeter.guard")

OUTPUT_ALLOWANCE_TOKENS = 2048  # what an in-flight request is assumed to write, at most
BYTES_PER_TOKEN = 4
_ZERO = Decimal(0)
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_MAX_OUT = re.compile(rb'"max_(?:tokens|completion_tokens|output_tokens)"\s*:\s*(\d{1,9})')
_MAX_MODELS = 256  # model names come from clients: the cache of their rates stays bounded
_SCAN = 64 * 1024  # the model name sits near the top of every client's request body

Estimator = Callable[[str, str, int, int], Decimal | None]  # provider, model, in, out -> USD


class Unenforced(Protocol):
    """Counts requests let through because the budget view is stale (``Metrics``)."""

    def count_budget_unenforced(self) -> None: ...


class LeaseStore(Protocol):
    """The database side of leases (``store.budgets.Leases``)."""

    holder: str

    async def take(
        self, key: CounterKey, amount: Decimal, chunk: Decimal, need: Decimal
    ) -> tuple[Decimal, Decimal]: ...
    async def give_back(self, key: CounterKey, amount: Decimal) -> None: ...
    async def renew(self) -> dict[CounterKey, Decimal]: ...
    async def sweep(self, now: datetime) -> int: ...


LEASE_CALL_S = 2.0  # a lease round trip that takes longer counts as the store being away
WAIT_FOR_ROOM_S = 10.0  # how long a request waits for in-flight spend to free room
IDLE_LEASE_S = 60.0  # an unused lease not drawn on for this long goes back to its budget
RENEW_EVERY_S = 10.0


class OverBudget(Exception):
    """A hard budget is spent: the request is answered 429 and not forwarded."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Ticket:
    """One admitted request's estimate, on the counters it was added to; ``short``: the hard
    budgets whose lease does not cover it yet (``secure`` before forwarding)."""

    keys: list[CounterKey]
    estimate: Decimal
    short: list[Budget] = field(default_factory=list)


@dataclass(slots=True)
class View:
    """One refresh: the budgets and the database's counters of their current periods (spent,
    and what the replicas' leases reserve)."""

    budgets: list[Budget]
    counted: dict[CounterKey, Decimal] = field(default_factory=dict)
    reserved: dict[CounterKey, Decimal] = field(default_factory=dict)


class BudgetGuard:
    """See module doc. Not thread-safe: used from the event loop only."""

    def __init__(
        self,
        tz: tzinfo,
        estimator: Estimator,
        *,
        fail_closed: bool = False,
        stale_after_s: float = 10.0,
        unenforced: Unenforced | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.holder = uuid.uuid4().hex  # this process, as the holder of its leases
        self.leases: LeaseStore | None = None  # set by the app once the store exists
        self.tz = tz
        self._estimator = estimator
        self._fail_closed = fail_closed
        self._stale_after_s = stale_after_s
        self._unenforced = unenforced
        self._now = now
        self._monotonic = monotonic
        self._by_user: dict[str, list[Budget]] = {}
        self._by_team: dict[str, list[Budget]] = {}
        self._org: list[Budget] = []
        self._counted: dict[CounterKey, Decimal] = {}
        self._local: dict[CounterKey, Decimal] = {}
        self._unwritten: dict[str, tuple[list[CounterKey], Decimal]] = {}
        self._awaiting: list[tuple[int, CounterKey, Decimal]] = []
        self._refreshes = 0
        self._fresh_at: float | None = None
        self._warned = False
        self._bounds: dict[Period, tuple[datetime, datetime]] = {}
        self._rates: dict[tuple[str, bytes], tuple[Decimal, Decimal]] = {}
        self._reserved: dict[CounterKey, Decimal] = {}
        self._held: dict[CounterKey, Decimal] = {}
        self._drawn_at: dict[CounterKey, float] = {}
        self._locks: dict[CounterKey, asyncio.Lock] = {}
        self._renewed_at = -math.inf

    # -- the hot path ---------------------------------------------------------------------

    def admit(self, provider: str, who: Attribution, body: bytes) -> Ticket | None:
        """A ticket for a request to forward (None: no budget covers it, or unenforced);
        ``OverBudget`` when a hard budget covering it is spent."""
        if not self._is_fresh():
            self._on_stale()
            return None
        budgets = self._covering(who)
        if not budgets:
            return None
        now = self._now()
        keys = []
        hard = []
        for budget in budgets:
            start, end = self._period(budget.period, now)
            key = (budget.scope.value, budget.name, budget.period.value, start)
            if budget.hard:
                if self.used(key) >= budget.amount_usd:
                    raise self._refusal(budget, now)
                hard.append((key, budget))
            keys.append(key)
        estimate = self._estimate(provider, body)
        ticket = Ticket(keys, estimate)
        if self.leases is not None:
            for key, budget in hard:
                if self._local.get(key, _ZERO) + estimate > self._held.get(key, _ZERO):
                    ticket.short.append(budget)
        if not ticket.short:
            self._draw(ticket.keys, estimate)
        return ticket

    async def secure(self, ticket: Ticket) -> None:
        """Grow the leases ``ticket`` is short of until they cover it (see module doc), then
        count it; on ``OverBudget`` it is counted nowhere. A store that fails or takes over
        ``LEASE_CALL_S`` counts as away: the request passes, or is refused if fail-closed."""
        covered: list[CounterKey] = []
        try:
            for budget in ticket.short:
                start, _ = self._period(budget.period, self._now())
                key = (*budget.key, start)
                await self._cover(key, budget, ticket.estimate)
                covered.append(key)
        except BaseException:  # refused, or the client went away while it waited
            self._add(covered, -ticket.estimate)
            raise
        self._draw([key for key in ticket.keys if key not in covered], ticket.estimate)
        ticket.short = []

    def _draw(self, keys: list[CounterKey], estimate: Decimal) -> None:
        self._add(keys, estimate)
        drawn = self._monotonic()
        for key in keys:
            self._drawn_at[key] = drawn

    async def _cover(self, key: CounterKey, budget: Budget, estimate: Decimal) -> None:
        """Until this replica's lease of ``key`` covers ``estimate`` more, which it then
        draws; ``OverBudget`` once the budget is spent or no room came in time."""
        deadline = self._monotonic() + WAIT_FOR_ROOM_S
        delay = 0.02
        while True:
            async with self._locks.setdefault(key, asyncio.Lock()):
                left = self._held.get(key, _ZERO) - self._local.get(key, _ZERO)
                granted, spent = _ZERO, _ZERO
                if left < estimate:
                    need = estimate - max(left, _ZERO)
                    room = budget.amount_usd - self.used(key) - self._reserved.get(key, _ZERO)
                    taken = await self._take(key, budget, need + max(_ZERO, room) / 8, need)
                    if taken is None:  # the store is away and budgets fail open
                        self._draw([key], estimate)
                        return
                    granted, spent = taken
                    self._held[key] = self._held.get(key, _ZERO) + granted
                if left >= estimate or granted:  # covered, or the budget's last room is ours
                    self._draw([key], estimate)
                    return
                self._counted[key] = max(spent, self._counted.get(key, _ZERO))
            if spent >= budget.amount_usd or self._monotonic() >= deadline:
                raise self._refusal(budget, self._now())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def _take(
        self, key: CounterKey, budget: Budget, chunk: Decimal, missing: Decimal
    ) -> tuple[Decimal, Decimal] | None:
        assert self.leases is not None
        try:
            return await asyncio.wait_for(
                self.leases.take(key, budget.amount_usd, chunk, missing), LEASE_CALL_S
            )
        except Exception as exc:  # the store is away: as when the view is stale
            log.warning("could not lease budget %s: %r", budget.who(), exc)
            self._on_stale()  # raises OverBudget when budgets fail closed
            return None

    def _refusal(self, budget: Budget, now: datetime) -> OverBudget:
        _, end = self._period(budget.period, now)
        retry = max(1, math.ceil((end - now).total_seconds()))
        return OverBudget(limit_message(budget, end, self.tz), retry)

    def settle(self, ticket: Ticket | None, event_id: str, cost: Decimal | None) -> None:
        """The request ended and was priced at ``cost``: it replaces the estimate until its
        row is written (an unknown cost keeps the estimate)."""
        if ticket is None:
            return
        spent = ticket.estimate if cost is None else cost
        self._add(ticket.keys, spent - ticket.estimate)
        self._unwritten[event_id] = (ticket.keys, spent)

    def used(self, key: CounterKey) -> Decimal:
        """Period-to-date spend of one budget period as this replica sees it."""
        return self._counted.get(key, _ZERO) + self._local.get(key, _ZERO)

    # -- the recorder and the refresher ----------------------------------------------------

    def written(
        self,
        event_ids: Iterable[str],
        counters: dict[CounterKey, Decimal] | None = None,
        released: dict[CounterKey, Decimal] | None = None,
    ) -> None:
        """These events' rows (and so their counter increments) are committed. ``counters``:
        the counters as that transaction left them (every replica's commits up to it): they
        replace this replica's local amounts for their keys at once, so a replica learns what
        the others spent at each of its own commits, not only at the next refresh.
        ``released``: what the transaction took off this replica's leases."""
        for key, amount in (released or {}).items():
            self._held[key] = max(_ZERO, self._held.get(key, _ZERO) - amount)
        fresh = counters or {}
        for key, value in fresh.items():
            self._counted[key] = max(value, self._counted.get(key, _ZERO))
        if fresh:
            self._drop_awaiting(lambda done, key: key in fresh)
        for event_id in event_ids:
            charge = self._unwritten.pop(event_id, None)
            if charge is None:
                continue
            keys, spent = charge
            for key in keys:
                if key in fresh:
                    self._add((key,), -spent)
                else:
                    self._awaiting.append((self._refreshes, key, spent))

    def begin_refresh(self) -> int:
        """Number a refresh about to read the database (pass it to ``apply``)."""
        self._refreshes += 1
        return self._refreshes

    def apply(self, view: View, refresh: int) -> None:
        """Take the database's view read by refresh number ``refresh``: drop the local amounts
        of rows committed before that refresh began (the counters hold them now). Counters only
        grow within a period, so a value learnt at a later commit is kept over an older read."""
        self._by_user, self._by_team, self._org = _index(view.budgets)
        old = self._counted
        self._counted = {k: max(v, old.get(k, _ZERO)) for k, v in view.counted.items()}
        self._reserved = dict(view.reserved)
        self._drop_awaiting(lambda done, key: done < refresh)
        self._local = {key: amount for key, amount in self._local.items() if amount}
        self._fresh_at = self._monotonic()
        if self._warned:
            log.info("budget store answers again: budgets enforced")
            self._warned = False

    async def maintain(self) -> None:
        """Give back unused leases that went idle or whose budget has no room left for
        others; renew this replica's leases and sweep crashed replicas' (every
        ``RENEW_EVERY_S``). Called by the refresher after each successful refresh."""
        if self.leases is None:
            return
        now = self._monotonic()
        for key in [k for k, held in self._held.items() if held > 0]:
            unused = self._held[key] - self._local.get(key, _ZERO)
            idle = now - self._drawn_at.get(key, -math.inf) >= IDLE_LEASE_S
            if unused > 0 and (idle or self._room_left(key) <= 0):
                await self._give_back(key, unused)
        if now - self._renewed_at >= RENEW_EVERY_S:
            self._renewed_at = now
            alive = await self.leases.renew()
            for key in list(self._held):  # a lease swept while this replica was cut off
                lock = self._locks.get(key)
                if not (lock and lock.locked()):
                    self._held[key] = min(self._held[key], alive.get(key, _ZERO))
            await self.leases.sweep(self._now())

    def _room_left(self, key: CounterKey) -> Decimal:
        budget = next((b for b in self.budgets() if b.key == key[:3]), None)
        if budget is None:
            return _ZERO
        return budget.amount_usd - self._counted.get(key, _ZERO) - self._reserved.get(key, _ZERO)

    async def _give_back(self, key: CounterKey, unused: Decimal) -> None:
        assert self.leases is not None
        async with self._locks.setdefault(key, asyncio.Lock()):
            self._held[key] -= unused  # before the round trip: no admission draws on it
            try:
                await asyncio.wait_for(self.leases.give_back(key, unused), LEASE_CALL_S)
            except Exception as exc:
                self._held[key] += unused  # still ours in the database: given back next time
                log.debug("could not give back a budget lease: %r", exc)
                return
        if not self._held[key]:
            del self._held[key]
            with contextlib.suppress(KeyError):
                del self._drawn_at[key]

    def _drop_awaiting(self, covered: Callable[[int, CounterKey], bool]) -> None:
        keep = []
        for done, key, spent in self._awaiting:
            if covered(done, key):
                self._add((key,), -spent)
            else:
                keep.append((done, key, spent))
        self._awaiting = keep

    def budgets(self) -> list[Budget]:
        return [
            *self._org,
            *(b for bs in (self._by_user, self._by_team) for v in bs.values() for b in v),
        ]

    def period_of(self, budget: Budget, at: datetime | None = None) -> tuple[datetime, datetime]:
        return period_bounds(budget.period, at or self._now(), self.tz)

    # -- internals ---------------------------------------------------------------------------

    def _is_fresh(self) -> bool:
        fresh = self._fresh_at
        return fresh is not None and self._monotonic() - fresh <= self._stale_after_s

    def _on_stale(self) -> None:
        if not self._warned:
            self._warned = True
            what = "refusing metered requests" if self._fail_closed else "requests pass"
            log.error("budget store unavailable: budgets are unenforced (%s)", what)
        if self._unenforced is not None:
            self._unenforced.count_budget_unenforced()
        if self._fail_closed:
            message = (
                "spend limits cannot be checked (the budget store is unavailable) and "
                "TOKENMETER_BUDGET_FAIL_CLOSED is set: request refused"
            )
            raise OverBudget(message, 5)

    def _covering(self, who: Attribution) -> list[Budget]:
        found = self._org
        if who.user is not None and (mine := self._by_user.get(who.user)):
            found = [*found, *mine]
        if who.team is not None and (ours := self._by_team.get(who.team)):
            found = [*found, *ours]
        return found

    def _period(self, period: Period, now: datetime) -> tuple[datetime, datetime]:
        bounds = self._bounds.get(period)
        if bounds is None or not bounds[0] <= now < bounds[1]:
            bounds = self._bounds[period] = period_bounds(period, now, self.tz)
        return bounds

    def _estimate(self, provider: str, body: bytes) -> Decimal:
        found = _MODEL.search(body, 0, _SCAN)
        if found is None:
            return _ZERO
        rates = self._rates.get((provider, found.group(1)))
        if rates is None:
            rates = self._rates_of(provider, found.group(1))
        per_input_token, per_output_token = rates
        limit = _MAX_OUT.search(body, 0, _SCAN)
        out = OUTPUT_ALLOWANCE_TOKENS if limit is None else int(limit.group(1))
        allowance = per_output_token * min(out, OUTPUT_ALLOWANCE_TOKENS)
        return per_input_token * (len(body) // BYTES_PER_TOKEN) + allowance

    def _rates_of(self, provider: str, name: bytes) -> tuple[Decimal, Decimal]:
        """(USD per input token, USD per output token) of one model, cached."""
        model = name.decode("utf-8", "replace")
        per_input = (self._estimator(provider, model, 1_000_000, 0) or _ZERO) / 1_000_000
        per_output = (self._estimator(provider, model, 0, 1_000_000) or _ZERO) / 1_000_000
        if len(self._rates) >= _MAX_MODELS:
            self._rates.clear()
        rates = self._rates[(provider, name)] = (per_input, per_output)
        return rates

    def _add(self, keys: Sequence[CounterKey], amount: Decimal) -> None:
        local = self._local
        for key in keys:
            local[key] = local.get(key, _ZERO) + amount


def _index(
    budgets: list[Budget],
) -> tuple[dict[str, list[Budget]], dict[str, list[Budget]], list[Budget]]:
    by_user: dict[str, list[Budget]] = {}
    by_team: dict[str, list[Budget]] = {}
    org = []
    for budget in budgets:
        if budget.scope is Scope.ORG:
            org.append(budget)
        else:
            index = by_user if budget.scope is Scope.USER else by_team
            index.setdefault(budget.name, []).append(budget)
    return by_user, by_team, org
