"""The ``message_batches`` records: a batch created through the proxy, and who created it.

``add`` keeps the first record of a batch id (a retried write changes nothing); ``find`` reads
one back. Both are single statements off the hot path: a batch is created, and its results
fetched, a few times a day, never once per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.tables import message_batches
from proxy.usage import Attribution, as_utc

_WHO = ("user", "team", "task", "session", "agent", "key_fingerprint")


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch as the proxy saw it created."""

    batch_id: str
    provider: str
    created_at: datetime
    model: str | None
    request_count: int
    attribution: Attribution


async def add(engine: AsyncEngine, record: BatchRecord) -> None:
    """Store ``record`` unless its batch id is already stored."""
    who = record.attribution
    row = {
        "batch_id": record.batch_id,
        "provider": record.provider,
        "created_at": as_utc(record.created_at),
        "model": record.model,
        "request_count": record.request_count,
        **{name: getattr(who, name) for name in _WHO},
        "attribution_source": who.source,
    }
    async with engine.begin() as conn:
        found = await conn.execute(
            select(message_batches.c.batch_id).where(message_batches.c.batch_id == record.batch_id)
        )
        if found.first() is None:
            await conn.execute(message_batches.insert().values(row))


async def find(engine: AsyncEngine, batch_id: str) -> BatchRecord | None:
    """The record of ``batch_id``, or None when it was not created through the proxy."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(message_batches).where(message_batches.c.batch_id == batch_id)
        )
        row = result.mappings().first()
    if row is None:
        return None
    who = Attribution(**{name: row[name] for name in _WHO}, source=row["attribution_source"])
    return BatchRecord(
        row["batch_id"],
        row["provider"],
        as_utc(row["created_at"]),
        row["model"],
        row["request_count"],
        who,
    )
