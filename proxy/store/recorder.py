"""The recorder: every usage event on local disk first, then in the database exactly once.

Contract:
- ``submit(event)`` is synchronous, never awaits and never raises. It turns the event into its
  row and appends it to the write-ahead spool (``spool.Spool``: one ``write()``, in the page
  cache before the exchange's last byte goes out, so a killed process loses nothing that was
  answered). A write that fails or is short is counted (``add_spool_errors``) and the row is
  kept in memory instead; it is never taken as written.
- Rows are shipped in segments: the active spool segment is sealed every ``flush_interval_s`` or
  at ``batch_size`` rows, and each sealed segment is written with ``writes.write_batch`` (insert
  + rollups, one transaction, idempotent by event id), up to ``max_in_flight`` at once, and its
  file removed only once every row of it is committed. Whatever is in the spool at start (this
  process's earlier life, a crashed worker's files) is adopted and shipped first.
- Every write has a timeout (``write_timeout_s``; ``batches.BatchWriter``). A timeout, or any
  database error that is not certainly the rows' fault, is an outage: the segment stays on
  disk, the store is degraded (``health()``, ``/healthz``), and the oldest segment is retried
  with exponential backoff (``retry_initial_s`` .. ``retry_max_s``) until the database
  answers; then the rest follows.
- Rows the database refuses for what they hold (SQLSTATE classes 22/23: ``writes.is_rows_fault``)
  go to the quarantine file (``quarantine.Quarantine``, through ``BatchWriter``), counted; never
  dropped. The rest of their batch is written.
- Memory is bounded: at most ``queue_max`` rows are held; beyond that, segments that are wholly on
  disk are released and read back when their turn comes. Only rows that reached neither the
  database nor the disk are ever lost: counted as dropped and logged at ERROR.
- ``stop()`` ships what it can within one write timeout and leaves the rest in the spool for
  the next start; a hung database cannot keep it from returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.batches import BatchMetrics, BatchWriter, Written
from proxy.store.quarantine import Quarantine, describe
from proxy.store.rows import Row, event_to_row, missing_columns, row_to_line
from proxy.store.spool import Spool
from proxy.store.writes import error_code
from proxy.usage import UsageEvent

log = logging.getLogger("tokenmeter.store.recorder")

ADOPT_EVERY_S = 30.0  # look for segments of workers that died since


class RecorderMetrics(BatchMetrics, Protocol):
    """What the recorder reports; ``proxy.metrics`` implements it with Prometheus collectors."""

    def set_queue_depth(self, n: int) -> None: ...
    def add_spooled(self, n: int) -> None: ...
    def add_dropped(self, n: int) -> None: ...
    def add_replayed(self, n: int) -> None: ...
    def add_spool_errors(self, n: int) -> None: ...


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

    def add_quarantined(self, n: int) -> None:
        pass

    def add_spool_errors(self, n: int) -> None:
        pass


class _PastDeadline(Exception):
    """Shutdown's time to ship is over: the rest stays in the spool for the next start."""


@dataclass(eq=False, slots=True)
class Segment:
    """Rows that travel together: one sealed spool file, or rows that never reached the disk."""

    path: Path | None
    rows: list[Row] | None  # None: released from memory, read back from ``path``
    count: int
    on_disk: bool = True  # every row is in ``path`` (False: a spool write failed)
    spooled: bool = False  # waited on disk for the database: counted spooled, then replayed


@dataclass(slots=True)
class _Active:
    rows: list[Row] = field(default_factory=list)
    on_disk: bool = True


class Recorder:
    """Write-ahead, batched, outage-proof writer of usage events (see module doc)."""

    def __init__(
        self,
        engine: AsyncEngine,
        spool: Spool,
        metrics: RecorderMetrics | None = None,
        batch_size: int = 1000,
        flush_interval_s: float = 0.5,
        queue_max: int = 100_000,
        *,
        quarantine: Quarantine | None = None,
        write_timeout_s: float = 5.0,
        retry_initial_s: float = 0.25,
        retry_max_s: float = 5.0,
        max_in_flight: int = 2,
        sync_interval_s: float = 0.1,
        budget_tz: tzinfo = UTC,
        budget_holder: str | None = None,
        on_written: Written | None = None,
    ) -> None:
        self._spool = spool
        self._metrics: RecorderMetrics = metrics or _NoMetrics()
        self._writer = BatchWriter(
            engine,
            quarantine or Quarantine(spool.directory),
            self._metrics,
            write_timeout_s,
            budget_tz=budget_tz,
            budget_holder=budget_holder,
            on_written=on_written,
        )
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._queue_max = queue_max
        self._write_timeout_s = write_timeout_s
        self._retry = (retry_initial_s, retry_max_s)
        self._max_in_flight = max(1, max_in_flight)
        self._sync_interval_s = sync_interval_s
        self._ship_lock = asyncio.Lock()
        self._active = _Active()
        self._pending: deque[Segment] = deque()
        self._held = 0  # rows held in memory by pending segments
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._deadline: float | None = None  # set by stop(): ship nothing new after it
        self._db_ok = True
        self._last_error: str | None = None
        self._spool_failing = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- what it reports ----------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Events not yet committed to the database (in memory or in the spool)."""
        return len(self._active.rows) + sum(segment.count for segment in self._pending)

    @property
    def database_ok(self) -> bool:
        """False while the database is away or hangs, and events wait in the spool."""
        return self._db_ok

    def health(self) -> dict[str, Any]:
        """The store's state for ``/healthz``."""
        alive = all(not task.done() for task in self._tasks) or self._stopping
        return {
            "database": "ok" if self._db_ok else "unavailable",
            "spool": "failing" if self._spool_failing else "ok",
            "pending_events": self.queue_depth,
            "in_memory_events": self._held + len(self._active.rows),
            "recorder": "running" if alive else "stopped",
            **({"last_error": self._last_error} if not self._db_ok else {}),
        }

    # -- hot path -----------------------------------------------------------------------------

    def submit(self, event: UsageEvent) -> None:
        """Append ``event`` to the spool and queue it for the database. Never raises."""
        try:
            row = event_to_row(event)
            line = row_to_line(row)
        except Exception as exc:  # a bug, not an outage: say so loudly, keep serving
            self._drop(1, f"unstorable event {event.event_id}: {exc!r}")
            return
        try:
            self._spool.append(line)
        except OSError as exc:
            self._on_spool_error(exc)
        else:
            if self._spool_failing:
                self._spool_failing = False
                log.warning("spool writable again")
        active = self._active
        active.rows.append(row)
        if len(active.rows) >= self._batch_size:
            self._seal()
            self._wake.set()

    def _on_spool_error(self, exc: OSError) -> None:
        self._active.on_disk = False
        self._metrics.add_spool_errors(1)
        if not self._spool_failing:
            self._spool_failing = True
            log.error("spool write failed, keeping events in memory until written: %r", exc)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what the spool holds from earlier runs, then start shipping and syncing."""
        await self._adopt()
        self._tasks = [
            asyncio.create_task(self._ship_loop(), name="tokenmeter-recorder"),
            asyncio.create_task(self._sync_loop(), name="tokenmeter-spool-sync"),
        ]

    async def stop(self) -> None:
        """Ship what the database takes within one write timeout; keep the rest in the spool."""
        self._stopping = True
        self._deadline = time.monotonic() + self._write_timeout_s
        self._stop_requested.set()
        self._wake.set()
        for task in self._tasks[1:]:  # the spool's syncer; the shipper finishes its round
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._seal()
        if self._db_ok:
            await self._ship_pending()
        await self._save_unsaved(final=True)
        self._metrics.set_queue_depth(self.queue_depth)
        try:
            await asyncio.to_thread(self._spool.close)
        except OSError as exc:
            log.error("could not sync and close the spool: %r", exc)

    async def flush(self) -> None:
        """Seal what was submitted and ship every pending segment now (or until an outage)."""
        self._seal()
        await self._ship_pending()

    async def _adopt(self) -> None:
        try:
            paths = await asyncio.to_thread(self._spool.adopt)
        except OSError as exc:
            log.error("cannot adopt spooled events in %s: %r", self._spool.directory, exc)
            return
        for path in paths:
            count = await asyncio.to_thread(_count_lines, path)
            self._pending.appendleft(Segment(path, None, count, spooled=True))
        if paths:
            log.info("replaying %d spooled segment(s) from earlier runs", len(paths))
            self._pending = deque(sorted(self._pending, key=_age))

    # -- background tasks ---------------------------------------------------------------------

    async def _ship_loop(self) -> None:
        delay = self._retry[0]
        adopted_at = time.monotonic()
        while not self._stopping:
            await self._pause(delay)
            self._wake.clear()
            try:
                await self.flush()
                if time.monotonic() - adopted_at > ADOPT_EVERY_S:
                    adopted_at = time.monotonic()
                    await self._adopt()
            except Exception:
                log.exception("recorder failed; it keeps running")
            self._metrics.set_queue_depth(self.queue_depth)
            delay = self._retry[0] if self._db_ok else min(delay * 2, self._retry[1])

    async def _pause(self, backoff: float) -> None:
        """Until the next round: the flush interval (or a full batch) while the database
        answers; the backoff while it does not (a full batch does not hurry a retry)."""
        event, timeout = (
            (self._wake, self._flush_interval_s) if self._db_ok else (self._stop_requested, backoff)
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval_s)
            if self._spool.needs_sync:
                try:
                    await asyncio.to_thread(self._spool.sync)
                except OSError as exc:
                    self._metrics.add_spool_errors(1)
                    log.error("spool fsync failed (a power cut could lose events): %r", exc)

    # -- segments -----------------------------------------------------------------------------

    def _seal(self) -> None:
        """Close the active segment; its rows go to the end of the pending queue."""
        active = self._active
        if not active.rows:
            return
        self._active = _Active()
        path = None
        try:
            path = self._spool.seal()
        except OSError as exc:  # the rows stay in the active file too: shipped twice, once
            self._on_spool_error(exc)
            active.on_disk = False
        segment = Segment(path, active.rows, len(active.rows), active.on_disk and path is not None)
        if not self._db_ok:
            self._mark_spooled(segment)
        self._pending.append(segment)
        self._held += segment.count
        self._release_memory()

    def _release_memory(self) -> None:
        """Hold at most ``queue_max`` rows: release the newest segments that are on disk."""
        for segment in reversed(self._pending):
            if self._held <= self._queue_max:
                return
            if segment.rows is not None and segment.on_disk and segment.path is not None:
                segment.rows = None
                self._held -= segment.count

    def _mark_spooled(self, segment: Segment) -> None:
        if not segment.spooled:
            segment.spooled = True
            self._metrics.add_spooled(segment.count)

    async def _ship_pending(self) -> None:
        """Ship pending segments oldest first, until none is left, the database fails, or
        shutdown's deadline passes; ``max_in_flight`` at once (one, as a probe, while the
        database is away). Segments sealed meanwhile join at once: no gap between rounds."""
        async with self._ship_lock:
            in_flight: dict[asyncio.Task[bool], Segment] = {}
            failed = False
            while not failed:
                limit = self._max_in_flight if self._db_ok else 1
                for segment in self._pending:
                    if len(in_flight) >= limit or self._past_deadline():
                        break
                    if segment not in in_flight.values():
                        in_flight[asyncio.create_task(self._ship(segment))] = segment
                if not in_flight:
                    break
                done, _ = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
                for task in done:
                    failed |= not task.result()
                    del in_flight[task]
            if in_flight:
                await asyncio.wait(in_flight)
            if failed:
                await self._save_unsaved(final=False)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    async def _ship(self, segment: Segment) -> bool:
        """Write one segment and forget it; False (segment kept) when the database failed."""
        try:
            rows = segment.rows if segment.rows is not None else await self._load(segment)
            for start in range(0, len(rows), self._batch_size):
                if start and self._past_deadline():
                    raise _PastDeadline
                await self._writer.store(rows[start : start + self._batch_size])
        except _PastDeadline:
            return False
        except Exception as exc:
            self._on_outage(exc)
            return False
        self._forget(segment)
        if not self._db_ok:
            self._db_ok, self._last_error = True, None
            log.info("database back; shipping the events spooled meanwhile")
        return True

    async def _load(self, segment: Segment) -> list[Row]:
        """A released segment's rows, read back from its file; lines that cannot be written
        (torn, or missing columns) are quarantined or counted."""
        path = segment.path
        assert path is not None  # only segments wholly on disk are released
        try:
            read = await asyncio.to_thread(lambda: list(self._spool.read(path)))
        except FileNotFoundError:
            self._drop(segment.count, f"spool segment {path} was removed before it was written")
            return []
        torn = read.count(None)
        if torn:
            self._drop(torn, f"{torn} unreadable line(s) in {segment.path}")
        rows = [row for row in read if row is not None]
        broken = [row for row in rows if missing_columns(row)]
        if broken:
            why = f"missing columns: {', '.join(missing_columns(broken[0]))}"
            await self._writer.set_aside(broken, describe(why))
        return [row for row in rows if not missing_columns(row)]

    def _forget(self, segment: Segment) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(segment)
        if segment.rows is not None:
            self._held -= segment.count
        if segment.path is not None:
            try:
                self._spool.remove(segment.path)
            except OSError as exc:  # replayed again later: harmless, writes are idempotent
                log.warning("could not remove committed segment %s: %r", segment.path, exc)
        if segment.spooled:
            self._metrics.add_replayed(segment.count)

    def _on_outage(self, exc: BaseException) -> None:
        for waiting in self._pending:  # every pending segment now waits for the database
            self._mark_spooled(waiting)
        code = error_code(exc)
        text = (str(exc) or repr(exc)).splitlines()[0][:300]
        self._last_error = f"[{code}] {text}" if code else text
        if self._db_ok:
            self._db_ok = False
            log.warning("database unavailable, usage events wait in the spool: %r", exc)

    async def _save_unsaved(self, *, final: bool) -> None:
        """Write segments that never fully reached the disk as whole spool segments; at the
        end of the process, whatever still cannot be written is lost, and counted."""
        for segment in list(self._pending):
            if segment.on_disk or segment.rows is None:
                continue
            lines = [row_to_line(row) for row in segment.rows]
            try:
                path = await asyncio.to_thread(self._spool.write_segment, lines)
            except OSError as exc:
                if final or self._held > self._queue_max:
                    self._pending.remove(segment)
                    self._held -= segment.count
                    self._drop(segment.count, f"database unavailable and spool failed: {exc}")
                continue
            if segment.path is not None:
                self._spool.remove(segment.path)
            segment.path, segment.on_disk = path, True
        self._release_memory()

    def _drop(self, n: int, why: str) -> None:
        self._metrics.add_dropped(n)
        log.error("DROPPED %d usage events (their cost is lost): %s", n, why)


def _count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def _age(segment: Segment) -> str:
    return "" if segment.path is None else segment.path.name
