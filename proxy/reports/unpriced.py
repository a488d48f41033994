"""Models seen in traffic without a known price: how many requests, and when.

Read from the hourly rollup (``unpriced_requests``), so it covers every event ever recorded,
raw events purged by retention included. A model listed here is priced by a catalog update or a
company override, then ``tokenmeter reprice`` gives its past events their cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.tables import usage_hourly


@dataclass(frozen=True, slots=True)
class Unpriced:
    """A (provider, model) with requests that had no price, over the hours they were seen."""

    provider: str
    model: str | None
    requests: int
    first_hour: datetime
    last_hour: datetime


async def unpriced_models(engine: AsyncEngine) -> list[Unpriced]:
    """Every (provider, model) with unpriced requests, most requests first."""
    h = usage_hourly.c
    count = sa.func.sum(h.unpriced_requests)
    query = (
        sa.select(h.provider, h.model, count, sa.func.min(h.hour), sa.func.max(h.hour))
        .group_by(h.provider, h.model)
        .having(count > 0)
        .order_by(count.desc(), h.model)
    )
    async with engine.connect() as conn:
        return [Unpriced(*row) for row in await conn.execute(query)]
