"""What the status line shows for one session: its cost so far, and its person's spend this
month (UTC), the same numbers ``tokenmeter usage`` gives for that session and month."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import money, sum_columns, sum_totals, totals_of
from proxy.reports.usage import usage
from proxy.reports.window import Filters
from proxy.store.tables import usage_events


async def session_spend(
    engine: AsyncEngine, session: str, now: datetime | None = None
) -> dict[str, Any]:
    """``session_cost_usd`` (null before its first priced request), its ``user`` (null when
    unknown) and that person's ``month_spend_usd`` from the first of this UTC month."""
    c = usage_events.c
    query = (
        sa.select(c.user, *sum_columns(usage_events)).where(c.session == session).group_by(c.user)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    cost = sum_totals([totals_of(row, 1) for row in rows]).known_cost_usd
    users = [row[0] for row in rows if row[0]]
    user = users[0] if len(users) == 1 else None
    month = None
    if user is not None:
        start = (now or datetime.now(UTC)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spent = await usage(engine, "user", Filters(start=start, user=user))
        month = sum_totals([t for _, t in spent]).known_cost_usd
    return {
        "session_cost_usd": None if cost is None else money(cost),
        "user": user,
        "month_spend_usd": None if month is None else money(month),
    }
