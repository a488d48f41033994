"""Budgets in the database: the records, the counters, and the refresher of the in-memory view.

- ``count_new(conn, rows, tz)`` runs inside the recorder's write transaction, on the rows that
  transaction inserted (never a replayed one: ``writes`` passes only rows its INSERT returned),
  and adds their priced cost to every covering budget's counter of the period the event started
  in: one upsert per (budget, period start), ``spent_usd = spent_usd + excluded.spent_usd``, in
  key order, so replicas writing at once agree and cannot deadlock.
- ``save_budget`` / ``delete_budget`` / ``list_budgets``: the records. A new budget's counter for
  the current period starts from the priced events already recorded in it (period-to-date),
  so a budget set mid-month knows what the month has spent.
- ``load_view``: every budget and the counters of its current period, for ``BudgetGuard``.
- ``BudgetRefresher``: reads ``load_view`` every ``interval_s`` (1 s by default) and hands it to
  the guard; a failed read leaves the guard's view to go stale (the guard then fails open or
  closed). It also sets each budget's used ratio for ``tokenmeter_budget_used_ratio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.budgets import Budget, BudgetKey, CounterKey, Period, Scope, make_budget, period_bounds
from proxy.guard import BudgetGuard, View
from proxy.store.alerts import Alerts
from proxy.store.rollup import dialect_insert
from proxy.store.rows import Row
from proxy.store.tables import budget_counters, budgets, usage_events

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


async def count_new(
    conn: AsyncConnection, rows: Sequence[Row], tz: tzinfo
) -> dict[CounterKey, Decimal]:
    """Add the cost of ``rows`` (just inserted, in ``conn``'s transaction) to the counters;
    return the counters of the current periods as this transaction leaves them ({} when no
    budget exists)."""
    found = await _read_budgets(conn) if rows else []
    if not found:
        return {}
    deltas: dict[CounterKey, Decimal] = {}
    for row in rows:
        cost = row["cost_usd"]
        if not cost:
            continue
        for budget in found:
            if budget.covers(row["user"], row["team"]):
                start, _ = period_bounds(budget.period, row["ts"], tz)
                key = (*budget.key, start)
                deltas[key] = deltas.get(key, _ZERO) + cost
    if deltas:
        await _add(conn, deltas)
    return await _current_counters(conn, found, tz, datetime.now(UTC))


async def _current_counters(
    conn: AsyncConnection, found: list[Budget], tz: tzinfo, now: datetime
) -> dict[CounterKey, Decimal]:
    starts = {p: period_bounds(p, now, tz)[0] for p in Period}
    earliest = min(starts[b.period] for b in found)
    result = await conn.execute(
        sa.select(budget_counters).where(budget_counters.c.period_start >= earliest)
    )
    counted: dict[CounterKey, Decimal] = {}
    for row in result:
        m = row._mapping
        start = m["period_start"]
        if starts[Period(m["period"])] == start:
            counted[(m["scope"], m["name"], m["period"], start)] = Decimal(m["spent_usd"])
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
        for table in (budget_counters, budgets):
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
    """Every budget and the database's counter of its current period."""
    async with engine.connect() as conn:
        found = await _read_budgets(conn)
        if not found:
            return View(found)
        return View(found, await _current_counters(conn, found, tz, now))


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
