"""Budgets as a person reads them: each budget's period-to-date spend, limit, percent and reset.

``budget_status`` reads the budgets and the database's counters of their current periods (the
same counters every replica's guard refreshes from), so the CLI, ``/api/v1/budgets`` and
``/api/v1/budgets/me`` show the number the caps enforce. ``set_budget`` and ``remove_budget`` are
the records' writes (``store.budgets``), here so the surfaces reach the store through one door.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.budgets import Budget, BudgetKey, period_bounds, reset_text
from proxy.store import budgets as store

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget in its current period."""

    budget: Budget
    spent: Decimal
    start: datetime
    end: datetime
    tz: tzinfo

    @property
    def percent(self) -> Decimal:
        return (self.spent / self.budget.amount_usd * 100).quantize(Decimal("0.1"))

    @property
    def over(self) -> bool:
        return self.spent >= self.budget.amount_usd

    def as_json(self) -> dict[str, Any]:
        b = self.budget
        return {
            "scope": b.scope.value,
            "name": b.name or None,
            "period": b.period.value,
            "kind": "hard" if b.hard else "soft",
            "limit_usd": f"{b.amount_usd:f}",
            "spent_usd": f"{self.spent:f}",
            "percent": str(self.percent),
            "alerts": list(b.alerts),
            "period_start": self.start.isoformat(),
            "resets_at": self.end.isoformat(),
            "resets": reset_text(self.end, self.tz),
        }


async def budget_status(
    engine: AsyncEngine,
    tz: tzinfo,
    now: datetime,
    *,
    user: str | None = None,
    team: str | None = None,
    covering: bool = False,
) -> list[BudgetStatus]:
    """Every budget (or, with ``covering``, those a request by ``user`` in ``team`` counts
    against: theirs, their team's, the org's) with its current period's spend."""
    view = await store.load_view(engine, tz, now)
    found = view.budgets
    if covering:
        found = [b for b in found if b.covers(user, team)]
    rows = []
    for budget in found:
        start, end = period_bounds(budget.period, now, tz)
        spent = view.counted.get((*budget.key, start), _ZERO)
        rows.append(BudgetStatus(budget, spent, start, end, tz))
    return rows


async def set_budget(engine: AsyncEngine, budget: Budget, tz: tzinfo, now: datetime) -> None:
    await store.save_budget(engine, budget, tz, now)


async def remove_budget(engine: AsyncEngine, key: BudgetKey) -> bool:
    return await store.delete_budget(engine, key)
