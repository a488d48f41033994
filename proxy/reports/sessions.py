"""What the status line shows for one session: its cost so far, its person's spend this month
(UTC), the same numbers ``tokenmeter usage`` gives for that session and month, and the tightest
budget covering that person (the same row ``/api/v1/budgets/me`` calls ``tightest``)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.budgets import budget_status
from proxy.reports.totals import money, sum_columns, sum_totals, totals_of
from proxy.reports.usage import usage
from proxy.reports.window import Filters
from proxy.store.tables import usage_events


async def session_spend(
    engine: AsyncEngine, session: str, tz: tzinfo = UTC, now: datetime | None = None
) -> dict[str, Any]:
    """``session_cost_usd`` (null before its first priced request), its ``user`` and ``team``
    (null when unknown or not one), that person's ``month_spend_usd`` from the first of this UTC
    month, and ``budget``: the budget covering them that is most used (null when none does;
    ``tz`` is the budgets' clock)."""
    now = now or datetime.now(UTC)
    c = usage_events.c
    query = (
        sa.select(c.user, c.team, *sum_columns(usage_events))
        .where(c.session == session)
        .group_by(c.user, c.team)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    cost = sum_totals([totals_of(row, 2) for row in rows]).known_cost_usd if rows else None
    user, team = _one({row[0] for row in rows}), _one({row[1] for row in rows})
    month = None
    if user is not None:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spent = await usage(engine, "user", Filters(start=start, user=user))
        month = sum_totals([t for _, t in spent]).known_cost_usd
    budgets = await budget_status(engine, tz, now, user=user, team=team, covering=True)
    tightest = max(budgets, key=lambda row: row.spent / row.budget.amount_usd, default=None)
    return {
        "session_cost_usd": None if cost is None else money(cost),
        "user": user,
        "team": team,
        "month_spend_usd": None if month is None else money(month),
        "budget": None if tightest is None else tightest.as_json(),
    }


def _one(names: set[str | None]) -> str | None:
    """The one name a session's requests carry, or None (none, or several)."""
    names.discard(None)
    names.discard("")
    return names.pop() if len(names) == 1 else None
