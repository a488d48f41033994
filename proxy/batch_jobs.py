"""Message Batches, metered: a batch is recorded when it is created through the proxy, and each
of its results is metered when the results file is downloaded through the proxy.

Why it exists: a batch's messages never pass ``/v1/messages``. The forwarder asks ``BatchJobs``
for a ``BatchWatch`` on the few batch paths (``wants``); the watch sees the answer's raw chunks
beside the client and, when the exchange ends (``finish``), acts:

- create (``POST /v1/messages/batches``): records the batch (id, creator's attribution, models,
  request count) in memory at once and in ``message_batches`` in the background, so another
  replica, or this one after a restart, bills its results to the same person.
- batch objects (create, retrieve, list, cancel): ``results_url`` is rewritten to the proxy
  (``TOKENMETER_PUBLIC_URL``, else the scheme and Host the client used, with its ``/u/…/t/…``
  prefix), so an SDK that follows it (``batches.results()``) downloads through the proxy. The
  object is small; it is held whole, rewritten, and re-encoded in the answer's own coding.
- results (``GET …/{id}/results``): the JSONL passes through untouched; every ``succeeded`` line
  becomes one ``UsageEvent`` handed to the same sink as every exchange (priced by the one
  pricer, at the batch tier: 50 %), attributed to the batch's creator (the downloader's
  attribution when the batch was not created through the proxy), dated when the batch was
  created, its path ``/v1/messages/batches/{id}/results/{custom_id}``. Its event id is derived
  from the batch id and ``custom_id``, and the store is idempotent by event id: downloading the
  same results again counts nothing. Metrics neither: result events already metered by this
  process, or already in the store (a primary-key lookup, in the background once the download
  ended), are not emitted again.
Errored, canceled and expired lines are not billed and make no event. Nothing here raises into
the forwarder: a fault is logged, and the bytes still go to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.encoding import DecodeError, EncodeError, make_decoder, make_encoder
from proxy.forward import BatchExchange
from proxy.providers import anthropic_batches as wire
from proxy.providers.body import load_object
from proxy.store import message_batches
from proxy.store.message_batches import BatchRecord
from proxy.store.recorded import stored_event_ids
from proxy.usage import ResponseFacts, Status, UsageEvent

log = logging.getLogger("tokenmeter.batch_jobs")

LOOKUP_TIMEOUT_S = 5.0  # the results wait this long at most for their creator's record
MAX_OBJECT_BYTES = 16 * 1024 * 1024  # a batch object (or a page of them) is a few KB
MAX_LINE_BYTES = 64 * 1024 * 1024  # one result line: a whole message
_KNOWN_MAX = 10_000  # batch records kept in memory (the table holds them all)
_METERED_MAX = 1_000_000  # result event ids this process metered, kept to skip a re-download

Emit = Callable[[UsageEvent], object]  # the meter


def result_event_id(batch_id: str, custom_id: str) -> str:
    """The event id of one result: the same for every download of the same results."""
    return hashlib.sha256(f"{batch_id}\0{custom_id}".encode()).hexdigest()[:32]


class BatchJobs:
    """Records batches and meters their results (module doc); one per app."""

    def __init__(self, engine: AsyncEngine, public_url: str | None = None) -> None:
        self._engine = engine
        self._public_url = public_url.rstrip("/") if public_url else None
        self._known: dict[str, BatchRecord] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._metered: dict[str, None] = {}  # insertion-ordered: the oldest go first

    @staticmethod
    def wants(provider: str, path: str) -> bool:
        """Cheap test on every exchange: is this a batch path of a provider with batches?"""
        return provider == "anthropic" and path.startswith(wire.BATCHES)

    async def watch(
        self,
        exchange: BatchExchange,
        content_type: str | None,
        content_encoding: str | None,
    ) -> _Watch | None:
        """The watch for one successful answer on a batch path, or None if nothing to do."""
        method, path = exchange.method, exchange.path
        batch_id = wire.results_route(method, path)
        if batch_id is not None:
            creator = await self.creator(batch_id)
            return _Results(self, exchange, batch_id, creator, content_encoding)
        if wire.object_route(method, path) and (content_type or "").startswith("application/json"):
            return _Objects(self, exchange, content_encoding)
        return None

    async def creator(self, batch_id: str) -> BatchRecord | None:
        """The record of a batch created through any replica, or None."""
        if (known := self._known.get(batch_id)) is not None:
            return known
        try:
            return await asyncio.wait_for(
                message_batches.find(self._engine, batch_id), LOOKUP_TIMEOUT_S
            )
        except Exception:  # the database away: bill the downloader rather than nobody
            log.exception("could not read batch %s; its results go to the downloader", batch_id)
            return None

    def base_url(self, exchange: BatchExchange) -> str:
        return (self._public_url or exchange.origin) + exchange.route_prefix

    def created(self, record: BatchRecord) -> None:
        """Remember a new batch now, and store it in the background."""
        if len(self._known) >= _KNOWN_MAX:
            self._known.pop(next(iter(self._known)))
        self._known[record.batch_id] = record
        self._background(self._store(record))

    def results(self, events: list[UsageEvent], emit: Emit) -> None:
        """Emit the result events not metered before (by this process, or found in the store),
        in the background: a second download must not count again in metrics either."""
        fresh = [e for e in events if e.event_id not in self._metered]
        if fresh:
            self._background(self._emit_new(fresh, emit))

    async def _emit_new(self, events: list[UsageEvent], emit: Emit) -> None:
        try:
            stored = await stored_event_ids(self._engine, [e.event_id for e in events])
        except Exception:  # the database away: the store's idempotence still holds
            log.warning("could not check stored batch results; metering them all")
            stored = set()
        for event in events:
            if event.event_id in stored or event.event_id in self._metered:
                continue
            if len(self._metered) >= _METERED_MAX:
                self._metered.pop(next(iter(self._metered)))
            self._metered[event.event_id] = None
            emit(event)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store(self, record: BatchRecord) -> None:
        try:
            await message_batches.add(self._engine, record)
        except Exception:
            log.exception("could not store batch %s", record.batch_id)

    async def drain(self) -> None:
        """Wait for the batch records and results being handled (shutdown, tests)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


class _Watch:
    """The ``forward.BatchWatch`` defaults: sees chunks, changes nothing."""

    rewrites = False

    def feed(self, chunk: bytes) -> None:
        """A raw chunk of the answer, before any filter."""

    def filter(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        return b""

    def finish(self, emit: Emit) -> None:
        """The exchange ended (however it ended)."""


class _Objects(_Watch):
    """A batch object (or a page of them): held whole, ``results_url`` rewritten, and on create
    the batch recorded."""

    rewrites = True

    def __init__(self, jobs: BatchJobs, exchange: BatchExchange, encoding: str | None) -> None:
        self._jobs, self._exchange, self._encoding = jobs, exchange, encoding
        self._raw: list[bytes] = []
        self._size = 0
        self._object: dict[str, Any] | None = None

    def filter(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size > MAX_OBJECT_BYTES:  # not a batch object: pass it all on unchanged
            held, self._raw = b"".join(self._raw), []
            self._size = -(1 << 62)
            return held + chunk
        if self._size < 0:
            return chunk
        self._raw.append(chunk)
        return b""

    def flush(self) -> bytes:
        raw = b"".join(self._raw)
        self._raw = []
        if not raw:
            return b""
        try:
            return self._rewritten(raw)
        except (DecodeError, EncodeError, ValueError):
            log.warning("batch answer not readable; sent on unchanged")
            return raw

    def _rewritten(self, raw: bytes) -> bytes:
        decoder = make_decoder(self._encoding)
        text = decoder.decode(raw) + decoder.flush() if decoder is not None else raw
        payload = load_object(text)
        if payload is None:
            return raw
        self._object = payload
        body = wire.dumps(wire.with_results_url(payload, self._jobs.base_url(self._exchange)))
        encoder = make_encoder(self._encoding)
        return encoder.encode(body) + encoder.finish() if encoder is not None else body

    def finish(self, emit: Emit) -> None:
        ex = self._exchange
        if self._object is None or not wire.create_route(ex.method, ex.path):
            return
        batch_id = wire.batch_id(self._object)
        if batch_id is None:
            return
        model, count = wire.created_batch(ex.body)
        record = BatchRecord(batch_id, "anthropic", ex.started_at, model, count, ex.attribution)
        self._jobs.created(record)


class _Results(_Watch):
    """A results file: every ``succeeded`` line becomes one event (module doc)."""

    def __init__(
        self,
        jobs: BatchJobs,
        exchange: BatchExchange,
        batch_id: str,
        creator: BatchRecord | None,
        encoding: str | None,
    ) -> None:
        self._jobs, self._exchange, self._batch_id = jobs, exchange, batch_id
        self._who = creator.attribution if creator is not None else exchange.attribution
        self._at = creator.created_at if creator is not None else exchange.started_at
        self._decoder = None
        self._broken = False
        try:
            self._decoder = make_decoder(encoding)
        except DecodeError:
            self._broken = True
        self._partial = b""
        self._results: list[tuple[str, ResponseFacts]] = []

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            data = self._decoder.decode(chunk) if self._decoder is not None else chunk
        except DecodeError:
            self._broken = True
            return
        self._lines(data)

    def _lines(self, data: bytes) -> None:
        *lines, rest = (self._partial + data).split(b"\n")
        self._partial = rest if len(rest) <= MAX_LINE_BYTES else b""
        for line in lines:
            if line.strip() and (read := wire.result_line(line)) is not None:
                self._results.append(read)

    def finish(self, emit: Emit) -> None:
        if not self._broken and self._decoder is not None:
            with contextlib.suppress(DecodeError):
                self._lines(self._decoder.flush())
        if self._partial.strip():
            self._lines(b"\n")
        events = [self._event(custom_id, facts) for custom_id, facts in self._results]
        self._results = []
        self._jobs.results(events, emit)

    def _event(self, custom_id: str, facts: ResponseFacts) -> UsageEvent:
        return UsageEvent(
            provider="anthropic",
            method="POST",
            path=f"{wire.BATCHES}/{self._batch_id}/results/{custom_id}",
            started_at=self._at,
            attribution=self._who,
            facts=facts,
            status=Status.OK,
            http_status=200,
            stream=False,
            duration_ms=0.0,
            event_id=result_event_id(self._batch_id, custom_id),
        )
