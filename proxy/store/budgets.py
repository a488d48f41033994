"""Budgets in the database: the records, the counters, and the refresher of the in-memory view.

- ``count_new(conn, rows, tally)`` runs inside the recorder's write transaction, on the rows that
  transaction inserted (never a replayed one: ``writes`` passes only rows its INSERT returned),
  and adds their priced cost to every covering budget's counter of the period the event started
  in: one upsert per (budget, period start), ``spent_usd = spent_usd + excluded.spent_usd``, in
  key order, so replicas writing at once agree and cannot deadlock. The same cost comes off the
  writing replica's lease of that counter (``tally.holder``; at most what the lease holds), so
  ``reserved_usd`` stays the sum of the leases and spend is never held twice.
- ``Leases``: a replica's leases of hard budgets (``budget_holds``), the database side of the
  guard's admission near and far from the cap: ``take`` grows a lease by a chunk when the
  budget's ``spent + reserved`` leaves room for it, else by what one request needs while any
  room is left (the one request that may end past the cap), else by nothing; ``give_back``
  returns an unused part; ``renew`` keeps a live replica's leases from being swept; ``sweep``
  returns the leases of replicas that stopped renewing them (crashed), from any replica.
- ``save_budget`` / ``delete_budget`` / ``list_budgets``: the records. A new budget's counter for
  the current period starts from the priced events already recorded in it (period-to-date),
  so a budget set mid-month knows what the month has spent.
- ``load_view``: every budget and the counters (spent, reserved) of its current period, for
  ``BudgetGuard``.
- ``BudgetRefresher``: reads ``load_view`` every ``interval_s`` (1 s by default) and hands it to
  the guard; a failed read leaves the guard's view to go stale (the guard then fails open or
  closed). It also sets each budget's used ratio for ``tokenmeter_budget_used_ratio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.budgets import Budget, BudgetKey, CounterKey, Period, Scope, make_budget, period_bounds
from proxy.guard import BudgetGuard, View
from proxy.store.alerts import Alerts
from proxy.store.rollup import dialect_insert
from proxy.store.rows import Row
from proxy.store.tables import budget_counters, budget_holds, budgets, usage_events

log = logging.getLogger("tokenmeter.store.budgets")
_ZERO = Decimal(0)


def _budget(row: sa.Row[tuple[object, ...]]) -> Budget:
    m = row._mapping
    alerts = tuple(int(a) for a in str(m["alerts"]).split(",") if a)
    return make_budget(
        str(m["scope"]),
        str(m["name"]),
        str(m["period"]),
        Decimal(m["amount_usd"]),
        hard=bool(m["hard"]),
        alerts=alerts,
    )


async def _read_budgets(conn: AsyncConnection) -> list[Budget]:
    result = await conn.execute(sa.select(budgets).order_by(*budgets.primary_key.columns))
    return [_budget(row) for row in result]


@dataclass(slots=True)
class Tally:
    """One write transaction's dealings with the budgets: the time zone of their periods and
    the replica whose leases its rows were spent under (in); the counters of the current
    periods as it left them and what it took off the holder's leases (out)."""

    tz: tzinfo = UTC
    holder: str | None = None
    counters: dict[CounterKey, Decimal] = field(default_factory=dict)
    released: dict[CounterKey, Decimal] = field(default_factory=dict)


async def count_new(conn: AsyncConnection, rows: Sequence[Row], tally: Tally) -> None:
    """Add the cost of ``rows`` (just inserted, in ``conn``'s transaction) to the counters and
    take it off the holder's leases; fill ``tally`` (nothing when no budget exists)."""
    found = await _read_budgets(conn) if rows else []
    if not found:
        return
    deltas: dict[CounterKey, Decimal] = {}
    for row in rows:
        cost = row["cost_usd"]
        if not cost:
            continue
        for budget in found:
            if budget.covers(row["user"], row["team"]):
                start, _ = period_bounds(budget.period, row["ts"], tally.tz)
                key = (*budget.key, start)
                deltas[key] = deltas.get(key, _ZERO) + cost
    if deltas:
        await _add(conn, deltas)
        if tally.holder is not None:
            tally.released = await _release(conn, tally.holder, deltas)
    counters = await _current_counters(conn, found, tally.tz, datetime.now(UTC))
    tally.counters = {key: spent for key, (spent, _) in counters.items()}


async def _release(
    conn: AsyncConnection, holder: str, deltas: dict[CounterKey, Decimal]
) -> dict[CounterKey, Decimal]:
    """Take the newly spent ``deltas`` off ``holder``'s leases (at most what each holds)."""
    held = await _holds(conn, holder)
    released = {key: min(held[key], spent) for key, spent in deltas.items() if held.get(key)}
    for key, amount in sorted(released.items()):
        await _move(conn, holder, key, -amount)
    return released


async def _holds(conn: AsyncConnection, holder: str) -> dict[CounterKey, Decimal]:
    result = await conn.execute(sa.select(budget_holds).where(budget_holds.c.holder == holder))
    return {_key_of(row): Decimal(row._mapping["amount_usd"]) for row in result}


def _key_of(row: sa.Row[tuple[object, ...]]) -> CounterKey:
    m = row._mapping
    return (m["scope"], m["name"], m["period"], m["period_start"])


def _where(table: sa.Table, key: CounterKey) -> sa.ColumnElement[bool]:
    scope, name, period, start = key
    c = table.c
    return sa.and_(c.scope == scope, c.name == name, c.period == period, c.period_start == start)


async def _move(conn: AsyncConnection, holder: str, key: CounterKey, amount: Decimal) -> None:
    """Grow (``amount`` > 0) or shrink ``holder``'s lease of ``key`` and the counter's
    ``reserved_usd`` with it."""
    await _reserve(conn, key, amount)
    await _hold(conn, holder, key, amount)


async def _reserve(conn: AsyncConnection, key: CounterKey, amount: Decimal) -> None:
    await conn.execute(
        sa.update(budget_counters)
        .where(_where(budget_counters, key))
        .values(reserved_usd=budget_counters.c.reserved_usd + amount)
    )


async def _hold(conn: AsyncConnection, holder: str, key: CounterKey, amount: Decimal) -> None:
    """Change ``holder``'s lease row of ``key`` by ``amount``; one shrunk to nothing goes."""
    mine = sa.and_(budget_holds.c.holder == holder, _where(budget_holds, key))
    if amount < 0:
        await conn.execute(
            sa.update(budget_holds)
            .where(mine)
            .values(amount_usd=budget_holds.c.amount_usd + amount)
        )
        await conn.execute(sa.delete(budget_holds).where(mine, budget_holds.c.amount_usd <= 0))
        return
    scope, name, period, start = key
    insert = dialect_insert(conn, budget_holds).values(
        holder=holder,
        scope=scope,
        name=name,
        period=period,
        period_start=start,
        amount_usd=amount,
        renewed_at=datetime.now(UTC),
    )
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[c.name for c in budget_holds.primary_key.columns],
            set_={
                "amount_usd": budget_holds.c.amount_usd + insert.excluded.amount_usd,
                "renewed_at": insert.excluded.renewed_at,
            },
        )
    )


async def _current_counters(
    conn: AsyncConnection, found: list[Budget], tz: tzinfo, now: datetime
) -> dict[CounterKey, tuple[Decimal, Decimal]]:
    """(spent, reserved) of each budget's current period."""
    starts = {p: period_bounds(p, now, tz)[0] for p in Period}
    earliest = min(starts[b.period] for b in found)
    result = await conn.execute(
        sa.select(budget_counters).where(budget_counters.c.period_start >= earliest)
    )
    counted: dict[CounterKey, tuple[Decimal, Decimal]] = {}
    for row in result:
        m = row._mapping
        start = m["period_start"]
        if starts[Period(m["period"])] == start:
            key = (m["scope"], m["name"], m["period"], start)
            counted[key] = (Decimal(m["spent_usd"]), Decimal(m["reserved_usd"]))
    return counted


async def _add(conn: AsyncConnection, deltas: dict[CounterKey, Decimal]) -> None:
    values = [
        {"scope": s, "name": n, "period": p, "period_start": start, "spent_usd": amount}
        for (s, n, p, start), amount in sorted(deltas.items())
    ]
    insert = dialect_insert(conn, budget_counters)
    statement = insert.on_conflict_do_update(
        index_elements=[c.name for c in budget_counters.primary_key.columns],
        set_={"spent_usd": budget_counters.c.spent_usd + insert.excluded.spent_usd},
    )
    await conn.execute(statement, values)


# -- records --------------------------------------------------------------------------------


async def save_budget(engine: AsyncEngine, budget: Budget, tz: tzinfo, now: datetime) -> None:
    """Create or change ``budget``; a new one's current counter starts period-to-date."""
    row = {
        "scope": budget.scope.value,
        "name": budget.name,
        "period": budget.period.value,
        "amount_usd": budget.amount_usd,
        "hard": budget.hard,
        "alerts": ",".join(str(a) for a in budget.alerts),
        "updated_at": now,
    }
    async with engine.begin() as conn:
        insert = dialect_insert(conn, budgets).values(row)
        keys = [c.name for c in budgets.primary_key.columns]
        await conn.execute(insert.on_conflict_do_update(index_elements=keys, set_=row))
        start, _ = period_bounds(budget.period, now, tz)
        spent = await _spent_since(conn, budget, start)
        seed = dialect_insert(conn, budget_counters).values(
            scope=row["scope"],
            name=row["name"],
            period=row["period"],
            period_start=start,
            spent_usd=spent,
        )
        await conn.execute(seed.on_conflict_do_nothing())


async def _spent_since(conn: AsyncConnection, budget: Budget, start: datetime) -> Decimal:
    query = sa.select(sa.func.sum(usage_events.c.cost_usd)).where(usage_events.c.ts >= start)
    if budget.scope is not Scope.ORG:
        column = usage_events.c.user if budget.scope is Scope.USER else usage_events.c.team
        query = query.where(column == budget.name)
    total = (await conn.execute(query)).scalar_one()
    return Decimal(total or 0)


async def delete_budget(engine: AsyncEngine, key: BudgetKey) -> bool:
    """Remove one budget and its counters; False when there was none."""
    scope, name, period = key
    async with engine.begin() as conn:
        for table in (budget_holds, budget_counters, budgets):
            result = await conn.execute(
                sa.delete(table).where(
                    table.c.scope == scope, table.c.name == name, table.c.period == period
                )
            )
    return bool(result.rowcount)


async def list_budgets(engine: AsyncEngine) -> list[Budget]:
    async with engine.connect() as conn:
        return await _read_budgets(conn)


async def load_view(engine: AsyncEngine, tz: tzinfo, now: datetime) -> View:
    """Every budget and the database's counter (spent, reserved) of its current period."""
    async with engine.connect() as conn:
        found = await _read_budgets(conn)
        if not found:
            return View(found)
        counters = await _current_counters(conn, found, tz, now)
    spent = {key: value for key, (value, _) in counters.items()}
    reserved = {key: value for key, (_, value) in counters.items()}
    return View(found, spent, reserved)


# -- leases ---------------------------------------------------------------------------------

LEASE_TTL = timedelta(seconds=60)  # a lease not renewed for this long is its holder's no more


class Leases:
    """One replica's (``holder``'s) leases in the database (see module doc)."""

    def __init__(self, engine: AsyncEngine, holder: str) -> None:
        self._engine = engine
        self.holder = holder

    async def take(
        self, key: CounterKey, amount: Decimal, chunk: Decimal, need: Decimal
    ) -> tuple[Decimal, Decimal]:
        """Grow this replica's lease of ``key`` (a budget of ``amount``) by ``chunk`` if the
        budget has room for it, else by ``need`` if it has any room at all; return (granted,
        the counter's spent_usd)."""
        scope, name, period, start = key
        async with self._engine.begin() as conn:
            seed = dialect_insert(conn, budget_counters).values(
                scope=scope, name=name, period=period, period_start=start, spent_usd=_ZERO
            )
            await conn.execute(seed.on_conflict_do_nothing())
            granted = _ZERO
            for want, room in ((chunk, amount - chunk), (need, None)):
                taken = budget_counters.c.spent_usd + budget_counters.c.reserved_usd
                fits = taken <= room if room is not None else taken < amount
                result = await conn.execute(
                    sa.update(budget_counters)
                    .where(_where(budget_counters, key), fits)
                    .values(reserved_usd=budget_counters.c.reserved_usd + want)
                )
                if result.rowcount:
                    granted = want
                    break
            if granted:
                await _hold(conn, self.holder, key, granted)
            spent = (
                await conn.execute(
                    sa.select(budget_counters.c.spent_usd).where(_where(budget_counters, key))
                )
            ).scalar_one()
        return granted, Decimal(spent)

    async def give_back(self, key: CounterKey, amount: Decimal) -> None:
        """Return ``amount`` of this replica's lease of ``key`` to the budget (at most what
        the lease holds)."""
        async with self._engine.begin() as conn:
            held = (await _holds(conn, self.holder)).get(key, _ZERO)
            if held > 0:
                await _move(conn, self.holder, key, -min(amount, held))

    async def renew(self) -> dict[CounterKey, Decimal]:
        """Mark this replica's leases alive (``sweep`` leaves them be); return them."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(budget_holds)
                .where(budget_holds.c.holder == self.holder)
                .values(renewed_at=datetime.now(UTC))
            )
            return await _holds(conn, self.holder)

    async def sweep(self, now: datetime) -> int:
        """Return every lease its holder stopped renewing (a replica that crashed) to its
        budget; how many. Each is claimed by deleting it, so two sweepers release it once."""
        cutoff = now - LEASE_TTL
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.select(budget_holds).where(budget_holds.c.renewed_at < cutoff)
            )
            stale = [(row._mapping["holder"], _key_of(row)) for row in result]
            released = 0
            for holder, key in stale:
                mine = sa.and_(budget_holds.c.holder == holder, _where(budget_holds, key))
                gone = await conn.execute(
                    sa.delete(budget_holds)
                    .where(mine, budget_holds.c.renewed_at < cutoff)
                    .returning(budget_holds.c.amount_usd)
                )
                amount = gone.scalar_one_or_none()
                if amount is not None:
                    await _reserve(conn, key, -Decimal(amount))
                    released += 1
        return released


# -- the refresher --------------------------------------------------------------------------


class UsedRatios(Protocol):
    """Where each budget's used ratio goes (``Metrics``)."""

    def set_budget_used(self, ratios: dict[BudgetKey, float]) -> None: ...


class BudgetRefresher:
    """Keeps ``guard`` at most ``interval_s`` behind the database (see module doc)."""

    def __init__(
        self,
        engine: AsyncEngine,
        guard: BudgetGuard,
        ratios: UsedRatios | None = None,
        interval_s: float = 1.0,
        alerts: Alerts | None = None,
    ) -> None:
        self._engine = engine
        self._alerts = alerts
        self._guard = guard
        self._ratios = ratios
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Read the database once and hand the view to the guard; False if it failed."""
        number = self._guard.begin_refresh()
        now = datetime.now(UTC)
        try:
            view = await asyncio.wait_for(
                load_view(self._engine, self._guard.tz, now), timeout=max(self._interval_s, 2.0)
            )
        except Exception as exc:  # an outage: the guard's view goes stale and says so
            log.debug("budget refresh failed: %r", exc)
            return False
        self._guard.apply(view, number)
        try:
            await self._guard.maintain()
        except Exception as exc:  # leases are given back, renewed, swept at a later refresh
            log.debug("budget lease upkeep failed: %r", exc)
        if self._ratios is not None:
            self._ratios.set_budget_used(self._ratios_of(view, now))
        if self._alerts is not None:
            starts = {p.value: period_bounds(p, now, self._guard.tz)[0] for p in Period}
            try:
                await self._alerts.check(view, starts)
            except Exception as exc:  # the claim needs the database: tried again next refresh
                log.debug("budget alert check failed: %r", exc)
        return True

    def _ratios_of(self, view: View, now: datetime) -> dict[BudgetKey, float]:
        ratios = {}
        for budget in view.budgets:
            start, _ = self._guard.period_of(budget, now)
            spent = self._guard.used((*budget.key, start))
            ratios[budget.key] = float(spent / budget.amount_usd)
        return ratios

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="tokenmeter-budget-refresh")

    async def stop(self) -> None:
        if self._alerts is not None:
            await self._alerts.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.refresh()
