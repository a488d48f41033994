"""Retention: the running proxy drops raw events older than N days; the rollup keeps history.

``TOKENMETER_RETENTION_DAYS`` unset keeps raw events forever. Set, ``Retention`` purges once at
start and then every ``interval_s`` (an hour): raw events of whole UTC hours older than N days
are deleted, so an hour is either wholly raw-backed or rollup-only (``rebuild_rollups`` relies
on that), while ``usage_hourly`` keeps every hour for reports over any range.

Contract:
- ``start()``/``stop()`` never raise into the app; a failed purge is logged and retried at the
  next interval. What was removed is logged at INFO.
- Deletes go oldest hour first, one hour per transaction, so no transaction holds locks for
  long (the recorder keeps writing meanwhile) and a stop between hours loses nothing.
- Any number of replicas may run it at once: each DELETE removes rows by time, so a row two
  replicas race for is deleted once and counted by one of them; the result is the same.
- Keep N longer than any database outage the spool may have to bridge: an event replayed after
  its raw row was purged is no longer recognised as already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.aggregates import hour_of
from proxy.store.rollup import oldest_raw, purge_raw_before

log = logging.getLogger("tokenmeter.store.retention")

HOUR = timedelta(hours=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Retention:
    """Periodic purge of raw events older than ``days`` (``None``: keep them; does nothing)."""

    def __init__(
        self,
        engine: AsyncEngine,
        days: int | None,
        *,
        interval_s: float = 3600.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._days = days
        self._interval_s = interval_s
        self._clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._days is not None

    async def start(self) -> None:
        """Start the purge loop (its first purge runs right away, in the background)."""
        if self._days is None or self._task is not None:
            return
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="tokenmeter-retention")
        log.info("retention: raw events older than %d days are purged hourly", self._days)

    async def stop(self) -> None:
        """Stop the loop after the hour being deleted, if any, is committed."""
        if self._task is None:
            return
        self._stopping.set()
        with contextlib.suppress(Exception):
            await self._task
        self._task = None

    def cutoff(self) -> datetime:
        """Raw events before this hour boundary are due for deletion."""
        if self._days is None:
            raise ValueError("retention is disabled")
        return hour_of(self._clock() - timedelta(days=self._days))

    async def purge(self) -> int:
        """Delete every due raw event now, one hour per transaction; return how many."""
        cutoff, removed = self.cutoff(), 0
        boundary = await self._next_boundary(cutoff)
        while boundary is not None and not self._stopping.is_set():
            deleted = await purge_raw_before(self._engine, boundary)
            removed += deleted
            boundary = await self._following(boundary, deleted, cutoff)
        if removed:
            log.info("retention: removed %d raw events before %s", removed, cutoff.isoformat())
        return removed

    async def _next_boundary(self, cutoff: datetime) -> datetime | None:
        """The end of the oldest hour that still has raw events due, or None."""
        oldest = await oldest_raw(self._engine)
        if oldest is None or oldest >= cutoff:
            return None
        return min(hour_of(oldest) + HOUR, cutoff)

    async def _following(
        self, boundary: datetime, deleted: int, cutoff: datetime
    ) -> datetime | None:
        if boundary >= cutoff:
            return None
        if deleted:
            return boundary + HOUR
        return await self._next_boundary(cutoff)  # a gap in the data: skip to the next rows

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.purge()
            except Exception:
                log.exception("retention: purge failed; retrying in %.0f s", self._interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
