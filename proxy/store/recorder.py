"""The recorder: takes usage events off the hot path and gets every one into the database once.

Contract:
- ``submit(event)`` is synchronous and never awaits the database. It appends to a bounded queue;
  when the queue is full the event goes straight to the spool; when that fails too the event is
  counted as dropped and logged at ERROR. ``submit`` never raises.
- A writer task flushes the queue every ``flush_interval_s`` or as soon as ``batch_size`` events
  wait, with ``writes.write_batch`` (one INSERT + rollup upsert, one transaction, idempotent).
  Up to ``max_in_flight`` batches (default 2) are written at once, each on its own connection
  and transaction, so building the next batch's rows in Python overlaps the database's work on
  the previous one. Concurrent batches cannot deadlock on the rollups (``writes`` upserts in key
  order). SQLite has a single writer: there the writes themselves take turns (an asyncio lock,
  not SQLite's busy wait) while the row building still overlaps.
- When the database is away, batches go to the spool and a replay loop retries with exponential
  backoff; once the database answers it replays the spool oldest first and removes each segment
  only after its rows are committed. While a replay is pending the writer spools too, so the
  database sees events roughly in the order they happened.
- Rows the database *refuses* (not a connection problem) are written one by one so a single bad
  row cannot block its batch forever; the refused ones are dropped, counted and logged.
- ``start()`` replays what an earlier process left in the spool, then starts the writer;
  ``stop()`` flushes the queue (to the database, else the spool) before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.rows import Row, event_to_row
from proxy.store.spool import Spool
from proxy.store.writes import is_transient, write_batch
from proxy.usage import UsageEvent

log = logging.getLogger(__name__)

_BUILD_SLICE = 200  # events turned into rows between two yields to the event loop


class RecorderMetrics(Protocol):
    """What the recorder reports; ``proxy.metrics`` implements it with Prometheus collectors."""

    def set_queue_depth(self, n: int) -> None: ...
    def observe_batch(self, size: int, seconds: float) -> None: ...
    def add_spooled(self, n: int) -> None: ...
    def add_dropped(self, n: int) -> None: ...
    def add_replayed(self, n: int) -> None: ...


class _NoMetrics:
    def set_queue_depth(self, n: int) -> None:
        pass

    def observe_batch(self, size: int, seconds: float) -> None:
        pass

    def add_spooled(self, n: int) -> None:
        pass

    def add_dropped(self, n: int) -> None:
        pass

    def add_replayed(self, n: int) -> None:
        pass


async def _settle(tasks: set[asyncio.Task[None]], when: str) -> set[asyncio.Task[None]]:
    """Wait for ``tasks`` as ``asyncio.wait`` does; log what a finished one raised (batch
    writers handle their own failures, so this is a bug, not an outage). Returns those pending."""
    if not tasks:
        return tasks
    done, pending = await asyncio.wait(tasks, return_when=when)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("recorder batch writer failed", exc_info=task.exception())
    return pending


class Recorder:
    """Batched, spool-backed writer of usage events (see module doc)."""

    def __init__(
        self,
        engine: AsyncEngine,
        spool: Spool,
        metrics: RecorderMetrics | None = None,
        batch_size: int = 1000,
        flush_interval_s: float = 0.5,
        queue_max: int = 100_000,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        max_in_flight: int = 2,
    ) -> None:
        self._engine = engine
        self._spool = spool
        self._metrics: RecorderMetrics = metrics or _NoMetrics()
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._queue_max = queue_max
        self._retry = (retry_initial_s, retry_max_s)
        self._queue: deque[UsageEvent] = deque()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._max_in_flight = max(1, max_in_flight)
        self._one_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._replay_lock = asyncio.Lock()
        self._db_ok = True
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def database_ok(self) -> bool:
        """False while the database is away and events go to the spool."""
        return self._db_ok

    # -- hot path ---------------------------------------------------------------------------

    def submit(self, event: UsageEvent) -> None:
        """Queue ``event`` for writing. Never blocks on the database, never raises."""
        if len(self._queue) >= self._queue_max:
            self._spool_now(self._rows([event]), why="queue full")
            return
        self._queue.append(event)
        self._metrics.set_queue_depth(len(self._queue))
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Replay what the spool holds from earlier runs, then start the writer task."""
        await asyncio.to_thread(self._spool.adopt_orphans)
        try:
            await self.replay()
        except Exception as exc:
            self._on_db_failure(exc, "replay at start")
        self._writer = asyncio.create_task(self._write_loop(), name="tokenmeter-recorder")

    async def stop(self) -> None:
        """Stop the background tasks and flush every queued event to the database or spool."""
        self._stopping = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued now (to the database, or the spool if it is away), up to
        ``max_in_flight`` batches at once; returns when every batch is committed or spooled."""
        async with self._write_lock:
            in_flight: set[asyncio.Task[None]] = set()
            try:
                while self._queue:
                    rows = await self._next_batch()
                    while len(in_flight) >= self._max_in_flight:
                        in_flight = await _settle(in_flight, asyncio.FIRST_COMPLETED)
                    in_flight.add(asyncio.create_task(self._write_rows(rows)))
                    await asyncio.sleep(0)  # let it start talking to the database
            finally:
                await _settle(in_flight, asyncio.ALL_COMPLETED)
            self._metrics.set_queue_depth(len(self._queue))

    # -- writer -----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("recorder writer failed; it keeps running")
            if self._db_ok and self._spool.dirty:
                self._ensure_replayer()

    async def _next_batch(self) -> list[Row]:
        """The next ``batch_size`` queued events as rows, built in slices with a yield between
        them so batches already in flight keep talking to the database meanwhile."""
        count = min(self._batch_size, len(self._queue))
        events = [self._queue.popleft() for _ in range(count)]
        rows: list[Row] = []
        for start in range(0, count, _BUILD_SLICE):
            rows += self._rows(events[start : start + _BUILD_SLICE])
            await asyncio.sleep(0)
        return rows

    async def _write_rows(self, rows: list[Row]) -> None:
        """Write ``rows`` to the database, or spool them while it is away. Never raises."""
        if not self._db_ok:
            await self._spool_async(rows)
            return
        try:
            await self._store(rows)
        except Exception as exc:
            self._on_db_failure(exc, "write")
            await self._spool_async(rows)

    def _rows(self, events: Sequence[UsageEvent]) -> list[Row]:
        rows = []
        for event in events:
            try:
                rows.append(event_to_row(event))
            except Exception as exc:
                self._drop([{"event_id": event.event_id}], f"unstorable event: {exc!r}")
        return rows

    async def _store(self, rows: Sequence[Row]) -> None:
        """Write ``rows``; if the database refuses the batch, write them one by one and drop
        the refused ones. Raises only when the database is unavailable (``is_transient``)."""
        try:
            await self._write(rows)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error("database refused a batch of %d usage rows: %s", len(rows), exc)
            for row in rows:
                await self._store_one(row)

    async def _store_one(self, row: Row) -> None:
        try:
            await self._write([row])
        except Exception as exc:
            if is_transient(exc):
                raise
            self._drop([row], f"database refused event {row['event_id']}: {exc}")

    async def _write(self, rows: Sequence[Row]) -> None:
        if self._one_writer is None:
            await self._timed_write(rows)
            return
        async with self._one_writer:
            await self._timed_write(rows)

    async def _timed_write(self, rows: Sequence[Row]) -> None:
        began = time.perf_counter()
        await write_batch(self._engine, rows)
        self._metrics.observe_batch(len(rows), time.perf_counter() - began)

    # -- spool ------------------------------------------------------------------------------

    def _spool_now(self, rows: Sequence[Row], why: str) -> None:
        try:
            self._spool.append(rows)
        except OSError as exc:
            self._drop(rows, f"{why} and spool failed: {exc}")
            return
        self._metrics.add_spooled(len(rows))

    async def _spool_async(self, rows: Sequence[Row]) -> None:
        try:
            await asyncio.to_thread(self._spool.append, rows)
        except OSError as exc:
            self._drop(rows, f"database unavailable and spool failed: {exc}")
            return
        self._metrics.add_spooled(len(rows))

    def _drop(self, rows: Sequence[Row], why: str) -> None:
        self._metrics.add_dropped(len(rows))
        log.error("DROPPED %d usage events (their cost is lost): %s", len(rows), why)

    def _on_db_failure(self, exc: BaseException, during: str) -> None:
        if self._db_ok:
            log.warning("database unavailable during %s, spooling usage events: %r", during, exc)
        self._db_ok = False
        if not self._stopping:
            self._ensure_replayer()

    # -- replay -----------------------------------------------------------------------------

    def _ensure_replayer(self) -> None:
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.create_task(self._replay_loop(), name="tokenmeter-replay")

    async def _replay_loop(self) -> None:
        delay, ceiling = self._retry
        while not self._stopping:
            try:
                await self.replay()
            except Exception as exc:
                log.warning("spool replay failed, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ceiling)
                continue
            if not self._spool.dirty:
                self._db_ok = True
                log.info("database back; spool replayed")
                return

    async def replay(self) -> int:
        """Write every sealed and active spooled row to the database, oldest first; return how
        many rows were replayed. Raises if the database fails (the spool is kept)."""
        async with self._replay_lock:
            await asyncio.to_thread(self._spool.seal)
            replayed = 0
            for segment in await asyncio.to_thread(self._spool.segments):
                replayed += await self._replay_segment(segment)
            return replayed

    async def _replay_segment(self, segment: Path) -> int:
        try:
            rows = await asyncio.to_thread(lambda: list(self._spool.read(segment)))
        except FileNotFoundError:
            return 0  # another replica replayed it first
        for start in range(0, len(rows), self._batch_size):
            await self._store(rows[start : start + self._batch_size])
        await asyncio.to_thread(self._spool.remove, segment)
        self._metrics.add_replayed(len(rows))
        return len(rows)
