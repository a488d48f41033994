"""Writing one batch of usage rows: within a time limit, one writer at a time on SQLite, and the
rows the database refuses set aside in quarantine instead of blocking their batch.

``BatchWriter.store(rows)`` writes ``rows`` with ``writes.write_batch`` and raises when the
database is unavailable: any error that is not ``writes.is_rows_fault``, or ``WriteTimeout``
after ``write_timeout_s``. A timed-out write is cancelled but not awaited (a hung connection may
not even finish cancelling), so the caller is never held longer; it may still commit later,
which is harmless (writes are idempotent by event id). Rows the database refuses for what they
hold are found by halving the batch, added to the quarantine and counted; the rest of the batch
is written; ``on_written`` is told the event ids of every batch committed (the budget guard
then stops counting them locally). An ``OSError`` from the quarantine file propagates like an
outage: the caller keeps the rows and tries again later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, tzinfo
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.budgets import CounterKey
from proxy.store.budgets import Tally
from proxy.store.quarantine import Quarantine, describe
from proxy.store.rows import Row
from proxy.store.writes import is_rows_fault, write_batch

log = logging.getLogger("tokenmeter.store.batches")

_T = TypeVar("_T")


class BatchMetrics(Protocol):
    def observe_batch(self, size: int, seconds: float) -> None: ...
    def add_quarantined(self, n: int) -> None: ...


# event ids; the counters after the transaction; what it took off this replica's leases
Written = Callable[[list[str], dict[CounterKey, Decimal], dict[CounterKey, Decimal]], None]


class WriteTimeout(TimeoutError):
    """The database did not finish a write within the write timeout."""


class BatchWriter:
    """``store(rows)``: see module doc."""

    def __init__(
        self,
        engine: AsyncEngine,
        quarantine: Quarantine,
        metrics: BatchMetrics,
        write_timeout_s: float,
        *,
        budget_tz: tzinfo = UTC,
        budget_holder: str | None = None,
        on_written: Written | None = None,
    ) -> None:
        self._engine = engine
        self._budget_tz = budget_tz
        self._budget_holder = budget_holder
        self._on_written = on_written
        self.quarantine = quarantine
        self._metrics = metrics
        self.write_timeout_s = write_timeout_s
        self._one_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._abandoned: set[asyncio.Future[Any]] = set()

    async def store(self, rows: Sequence[Row]) -> None:
        """Write ``rows``; quarantine those the database refuses. Raises on an outage, with
        whatever was written so far committed."""
        try:
            await self._write(rows)
        except Exception as exc:
            if not is_rows_fault(exc):
                raise
            if len(rows) == 1:
                log.error("database refused event %s: %s", rows[0]["event_id"], exc)
                await self.set_aside(rows, describe(exc))
                return
            half = len(rows) // 2
            await self.store(rows[:half])
            await self.store(rows[half:])

    async def set_aside(self, rows: Sequence[Row], reason: dict[str, Any]) -> None:
        """Add ``rows`` to the quarantine, durably (``OSError`` otherwise), and count them."""
        await asyncio.to_thread(self.quarantine.add, rows, reason)
        self._metrics.add_quarantined(len(rows))

    async def _write(self, rows: Sequence[Row]) -> None:
        began = time.perf_counter()
        tally = Tally(self._budget_tz, self._budget_holder)
        await self._within_timeout(self._write_turn(rows, tally))
        self._metrics.observe_batch(len(rows), time.perf_counter() - began)
        if self._on_written is not None:
            self._on_written([row["event_id"] for row in rows], tally.counters, tally.released)

    async def _write_turn(self, rows: Sequence[Row], tally: Tally) -> None:
        if self._one_writer is None:
            await write_batch(self._engine, rows, tally)
            return
        async with self._one_writer:  # SQLite has one writer: take turns here, not in its lock
            await write_batch(self._engine, rows, tally)

    async def _within_timeout(self, work: Coroutine[Any, Any, _T]) -> _T:
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self.write_timeout_s)
        if task in done:
            return task.result()
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget_abandoned)
        raise WriteTimeout(f"database write took longer than {self.write_timeout_s} s")

    def _forget_abandoned(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved: no loop warning
            log.debug("abandoned database write ended with %r", task.exception())
