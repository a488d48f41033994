"""Which upstream responses the store already holds, by message id or upstream request id.

For ``tokenmeter backfill``: a response the proxy metered must not be counted again from a
transcript. Read in chunks (a bound list of ids per statement), on the ``usage_events`` columns
every proxied event fills (``message_id`` from the answer, ``request_id`` from its header).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.tables import usage_events

CHUNK = 500


async def recorded_ids(
    engine: AsyncEngine, message_ids: Sequence[str], request_ids: Sequence[str], *, besides: str
) -> set[str]:
    """The given message ids and request ids that events not of attribution source ``besides``
    already carry."""
    found: set[str] = set()
    columns = ((usage_events.c.message_id, message_ids), (usage_events.c.request_id, request_ids))
    async with engine.connect() as conn:
        for column, ids in columns:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                query = sa.select(column).where(
                    column.in_(chunk), usage_events.c.attribution_source != besides
                )
                found.update(value for (value,) in await conn.execute(query))
    return found


async def stored_event_ids(engine: AsyncEngine, event_ids: Sequence[str]) -> set[str]:
    """The given event ids the store already holds (a primary-key lookup per chunk)."""
    found: set[str] = set()
    async with engine.connect() as conn:
        for start in range(0, len(event_ids), CHUNK):
            chunk = list(event_ids[start : start + CHUNK])
            query = sa.select(usage_events.c.event_id).where(usage_events.c.event_id.in_(chunk))
            found.update(value for (value,) in await conn.execute(query))
    return found
