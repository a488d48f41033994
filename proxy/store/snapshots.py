"""The provider's report pages (``provider_reports``): added as fetched, never edited.

``add_pages`` stores the pages of one snapshot (a fetch run, or one imported file) in one
transaction, each with its fetch time; nothing here updates or deletes a row. ``pages_over``
reads the pages of a provider whose buckets overlap a window, oldest fetch first, for the
reader to keep the newest per report and day (``reports.reconcile``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.tables import provider_reports

_COLUMNS = tuple(provider_reports.c)


@dataclass(frozen=True, slots=True)
class StoredPage:
    """One page as stored: which report, when fetched, and its JSON text as received."""

    page_id: str
    snapshot_id: str
    fetched_at: datetime
    provider: str
    endpoint: str
    source: str  # "fetch" or "import"
    starts_at: datetime | None
    ends_at: datetime | None
    body: str


async def add_pages(engine: AsyncEngine, pages: list[StoredPage]) -> None:
    """Insert ``pages`` (one snapshot) in one transaction."""
    if not pages:
        return
    rows = [{column.name: getattr(page, column.name) for column in _COLUMNS} for page in pages]
    async with engine.begin() as conn:
        await conn.execute(provider_reports.insert(), rows)


async def pages_over(
    engine: AsyncEngine, provider: str, start: datetime, end: datetime
) -> list[StoredPage]:
    """Pages of ``provider`` with a bucket in ``[start, end)``, oldest fetch first."""
    c = provider_reports.c
    query = (
        sa.select(*_COLUMNS)
        .where(c.provider == provider, c.starts_at < end, c.ends_at > start)
        .order_by(c.fetched_at, c.page_id)
    )
    async with engine.connect() as conn:
        return [StoredPage(*row) for row in await conn.execute(query)]
