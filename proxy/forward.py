"""The pass-through: one ASGI app that forwards provider paths and meters each exchange.

Contract: a request is admitted first (``proxy/intake.py``): its raw path and query re-validated
(the upstream request line is built from them, never from a decoded path), its body read whole
within ``max_body_bytes``, its attribution values checked; a refused request is answered in the
provider's error format, counted in ``tokenmeter_requests_refused_total{reason}``, makes no
usage event, and nothing of it goes upstream; a body the client abandoned is never forwarded.
An admitted request goes upstream byte for byte (hop-by-hop and ``x-tokenmeter-*`` headers
aside, ``anthropic-*`` never filtered); the response comes back chunk by chunk as it arrives,
status and headers as upstream sent them, each chunk also fed to the provider's usage tap. When
the exchange ends, however it ends (done, upstream error, client hang-up, timeout), exactly one
``UsageEvent`` is handed to pricing, metrics and the recorder; nothing in that step may fail the
response, and nothing on this path awaits the database. A body relayed to its end is metered
before the client has all of it (before the chunk that completes a Content-Length body, else
before the final empty chunk), so the event is in the recorder's write-ahead file before the
agent has its answer; every other ending is metered in a ``finally``.

This is a raw ASGI app rather than a FastAPI route: the framework's request/response objects cost
more CPU per request than the whole metering step, and this path runs on every agent turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from proxy.attribution import (
    OWN_HEADER_PREFIX,
    AttributionError,
    Identifier,
    KeyOwner,
    RoutedPath,
    Verified,
    split_path,
)
from proxy.billing import BY_IDENTITY, Billing
from proxy.credentials import PASSTHROUGH, Admitted, KeyGate, KeyRefused
from proxy.failures import Failure
from proxy.guard import BudgetGuard, OverBudget, Ticket
from proxy.intake import Refusal, check_path, check_query, raw_target, read_body
from proxy.meter import Sink
from proxy.oidc import OidcVerifier, bearer_jwt
from proxy.providers import ChunkFilter, Provider, UsageTap
from proxy.quota import read_quota
from proxy.upstream import (
    Upstream,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.usage import Attribution, QuotaReading, ResponseFacts, Status, UsageEvent

log = logging.getLogger("tokenmeter.forward")
_MAX_MODEL_SCAN = 4 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_RESPONSE_DROP = HOP_BY_HOP - {b"content-length"}


@dataclass(frozen=True, slots=True)
class BatchExchange:
    """What a batch watch is told of its exchange: the request, who pays, and the proxy's own
    address as the client used it (``origin`` scheme://host, ``route_prefix`` the path before
    ``/v1/``)."""

    method: str
    path: str
    attribution: Attribution
    body: bytes
    started_at: datetime
    origin: str
    route_prefix: str


class BatchWatch(Protocol):
    """Sees one answer's raw chunks (``feed``); when ``rewrites``, it is also the answer's
    ``ChunkFilter``; ``finish(sink)`` once the exchange ended, however it ended. Never raises."""

    rewrites: bool

    def feed(self, chunk: bytes) -> None: ...

    def filter(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def finish(self, emit: Sink) -> None: ...


class BatchWatcher(Protocol):
    """Batch jobs (``proxy.batch_jobs``): which paths it wants, and a watch per answer."""

    def wants(self, provider: str, path: str) -> bool: ...

    async def watch(
        self, exchange: BatchExchange, content_type: str | None, content_encoding: str | None
    ) -> BatchWatch | None: ...


class RefusalCounter(Protocol):
    """Where refused requests are counted (``Metrics``)."""

    def count_refused(self, reason: str) -> None: ...


class _HangupWatch:
    """Cancels the relaying task when the client hangs up, even while upstream is silent.

    A done-callback, not a second task per chunk: the relay loop stays a plain ``async for``.
    The relaying task tells a hang-up cancellation from a real one by ``fired``.
    """

    def __init__(self, receive: Receive) -> None:
        self.fired = False
        self._closed = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(_wait_disconnect(receive))
        self._watcher.add_done_callback(self._on_done)

    def _on_done(self, watcher: asyncio.Future[None]) -> None:
        if self._closed or watcher.cancelled() or self._task is None:
            return
        if watcher.exception() is not None:  # receive() failed: treat as a hang-up
            log.debug("receive() failed while relaying: %r", watcher.exception())
        self.fired = True
        self._task.cancel()

    def absorb(self) -> None:
        if self._task is not None:
            self._task.uncancel()

    def close(self) -> None:
        self._closed = True
        self._watcher.cancel()


@dataclass(slots=True)
class _Exchange:
    """Mutable state of one exchange, turned into a ``UsageEvent`` at the end."""

    provider: Provider
    method: str
    path: str
    attribution: Attribution
    started_at: datetime
    t0: float
    status: Status = Status.OK
    http_status: int | None = None
    stream: bool = False
    tap: UsageTap | None = None
    chunk_filter: ChunkFilter | None = None
    note: Any = None
    sent_at: float | None = None  # the request left for upstream
    headers_at: float | None = None
    answered_at: float | None = None  # our response head went to the client
    first_chunk_at: float | None = None
    request_id: str | None = None
    facts: ResponseFacts = field(default_factory=ResponseFacts)
    body: bytes = b""  # the request as received: read only to name the model of an error
    upstream_headers: list[tuple[bytes, bytes]] | None = None  # the key swapped (credentials)
    metered: bool = False
    batch: BatchExchange | None = None  # on a batch path only (``batch_jobs``)
    watch: BatchWatch | None = None
    quota: tuple[QuotaReading, ...] = ()  # a seat's plan limits, from the response headers
    ticket: Ticket | None = None  # its estimate on the budgets that cover it


class Forwarder:
    """ASGI app for provider traffic; holds the one shared upstream client (upstream.py)."""

    def __init__(
        self,
        upstream: Upstream,
        providers: list[Provider],
        identifier: Identifier,
        sink: Sink,
        *,
        max_in_flight: int = 1024,
        max_body_bytes: int = 64 * 1024 * 1024,
        refusals: RefusalCounter | None = None,
        gate: KeyGate | None = None,
        oidc: OidcVerifier | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        batches: BatchWatcher | None = None,
        guard: BudgetGuard | None = None,
    ) -> None:
        self._guard = guard
        self._upstream = upstream
        self._providers = sorted(providers, key=lambda p: len(p.prefix), reverse=True)
        self._identifier = identifier
        self._sink = sink
        self._max_in_flight = max_in_flight
        self._max_body_bytes = max_body_bytes
        self._refusals = refusals
        self._gate = gate
        self._oidc = oidc
        self._in_flight = 0
        self._now = now
        self._batches = batches

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = split_path(raw_target(scope))
        provider = self._provider_for(routed.path)
        if provider is None:
            await self._not_found(send, scope["method"], routed.path)
            return
        headers = dict(scope["headers"])
        try:
            admitted = await self._admit(provider, scope, routed, headers, receive)
        except Refusal as refusal:
            await self._refuse(provider, send, refusal, headers)
            return
        if admitted is None:
            return
        ex, body = admitted
        if self._guard is not None and provider.is_metered(ex.method, ex.path):
            try:
                ex.ticket = self._guard.admit(provider.name, ex.attribution, body)
                if ex.ticket is not None and ex.ticket.short:  # near a hard cap: a round trip
                    await self._guard.secure(ex.ticket)
            except OverBudget as over:
                await self._over_budget(provider, send, over)
                return
        try:
            if self._in_flight >= self._max_in_flight:
                msg = f"tokenmeter: more than {self._max_in_flight} requests in flight; retry"
                await self._fail(ex, send, Status.REJECTED, Failure.OVERLOADED, msg)
                return
            self._in_flight += 1
            try:
                await self._exchange(ex, scope, headers, body, receive, send)
            finally:
                self._in_flight -= 1
        finally:
            self._finish(ex)

    async def caller(self, raw_headers: list[tuple[bytes, bytes]]) -> Attribution:
        """Who a request with these headers is billed to, as a forwarded request would be: its
        tokenmeter key or SSO token first, then the key map and headers. ``/budgets/me`` asks
        this, so a header cannot read another person's budget when a key says who is calling.
        Raises ``Refusal`` for a credential the gate refuses (or none, when one is required)."""
        provider = self._providers[0]
        keyed = await self._check_key(provider, raw_headers)
        who = keyed.identity
        verified = None
        if who is not None:
            verified = Verified(KeyOwner(who.user, who.team), who.label, who.source)
        return self._identifier.identify(dict(raw_headers), split_path("/"), b"", verified)

    def _provider_for(self, path: str) -> Provider | None:
        for provider in self._providers:
            if path.startswith(provider.prefix + "/v1/"):
                return provider
        return None

    def error_body(self, path: str, failure: Failure, message: str) -> bytes:
        """The error JSON of the provider ``path`` is for (the default provider's if none)."""
        routed = split_path(path.partition("?")[0])
        provider = self._provider_for(routed.path) or self._providers[-1]
        return provider.error_body(failure, message)

    async def _not_found(self, send: Send, method: str, path: str) -> None:
        message = (
            f"tokenmeter forwards provider API paths under /v1/ only; {method} {path} is not one"
        )
        body = self._providers[-1].error_body(Failure.NOT_FOUND, message)  # the default provider's
        await _send_local(send, Failure.NOT_FOUND.status, body)

    async def _admit(
        self,
        provider: Provider,
        scope: Scope,
        routed: RoutedPath,
        headers: Mapping[bytes, bytes],
        receive: Receive,
    ) -> tuple[_Exchange, bytes] | None:
        """The exchange and body of a request fit to forward; ``Refusal`` if it is not, None
        if the client hung up before its body was complete (nothing to answer or forward)."""
        path = check_path(routed.path[len(provider.prefix) :])
        check_query(scope.get("query_string", b""))
        keyed = await self._check_key(provider, scope["headers"])
        body = await read_body(receive, headers, self._max_body_bytes)
        if body is None:
            self._count_refused("incomplete_body")
            return None
        try:
            ex = self._start(provider, scope["method"], path, headers, routed, body, keyed)
        except AttributionError as exc:
            message = f"tokenmeter: {exc}; nothing was forwarded"
            raise Refusal(Failure.BAD_REQUEST, message, "bad_attribution") from None
        return ex, body

    async def _check_key(self, provider: Provider, raw: list[tuple[bytes, bytes]]) -> Admitted:
        """What the key gate makes of the request's key (``proxy.credentials``), or of its
        single sign-on token (``proxy.oidc``)."""
        if self._gate is None:
            return PASSTHROUGH
        try:
            token = bearer_jwt(raw) if self._oidc is not None else None
            if self._oidc is None or token is None:
                return self._gate.admit(provider.name, raw, provider.key_header)
            identity = await self._oidc.verify(token)
            return self._gate.swap(identity, provider.name, raw, provider.key_header)
        except KeyRefused as exc:
            message = f"{exc.message}; nothing was forwarded"
            raise Refusal(exc.failure, message, exc.reason) from None

    async def _refuse(
        self, provider: Provider, send: Send, refusal: Refusal, headers: Mapping[bytes, bytes]
    ) -> None:
        """Answer a refusal. The connection stays open (the server reads and drops whatever is
        left of the body, so a client still sending it gets this answer, not a reset), unless
        the client waits for ``100 Continue`` before it sends: its next request would be read
        as the body it never sent."""
        self._count_refused(refusal.reason)
        log.info("refused (%s): %s", refusal.reason, refusal.message)
        body = provider.error_body(refusal.failure, refusal.message)
        close = headers.get(b"expect", b"").lower() == b"100-continue"
        await _send_local(send, refusal.status, body, close=close)

    async def _over_budget(self, provider: Provider, send: Send, over: OverBudget) -> None:
        """A hard budget is spent: 429 in the provider's billing/quota error, told not to
        retry before the budget resets. Nothing is forwarded and no usage event is made."""
        self._count_refused("spend_limit")
        log.info("refused (spend_limit): %s", over.message)
        body = provider.error_body(Failure.SPEND_LIMIT, over.message)
        extra = [(b"x-should-retry", b"false"), (b"retry-after", b"%d" % over.retry_after_s)]
        await _send_local(send, Failure.SPEND_LIMIT.status, body, extra=extra)

    def _count_refused(self, reason: str) -> None:
        if self._refusals is not None:
            self._refusals.count_refused(reason)

    def _start(
        self,
        provider: Provider,
        method: str,
        path: str,
        headers: Mapping[bytes, bytes],
        routed: RoutedPath,
        body: bytes,
        keyed: Admitted = PASSTHROUGH,
    ) -> _Exchange:
        scan = body if self._identifier.needs_body(headers) else b""
        who = keyed.identity
        verified = None
        if who is not None:
            verified = Verified(KeyOwner(who.user, who.team), who.label, who.source)
        attribution = self._identifier.identify(headers, routed, scan, verified)
        if who is not None:  # paid per token, with the company's key
            attribution = replace(attribution, billing=BY_IDENTITY.get(who.source, Billing.API_KEY))
        ex = _Exchange(provider, method, path, attribution, self._now(), time.perf_counter())
        ex.body = body
        ex.upstream_headers = keyed.headers
        return ex

    async def _exchange(
        self,
        ex: _Exchange,
        scope: Scope,
        headers: Mapping[bytes, bytes],
        body: bytes,
        receive: Receive,
        send: Send,
    ) -> None:
        url = _upstream_url(ex.provider, ex.path, scope.get("query_string", b""))
        if self._batches is not None and self._batches.wants(ex.provider.name, ex.path):
            ex.batch = _batch_exchange(ex, scope, headers)
        upstream_body = self._prepared(ex, body)
        ex.sent_at = time.perf_counter()
        try:
            response = await self._upstream.send(
                ex.method,
                url,
                _request_headers(ex.upstream_headers or scope["headers"]),
                upstream_body,
            )
        except UpstreamTimeout as exc:
            await self._unreachable(ex, send, Failure.UPSTREAM_TIMEOUT, f"timed out: {exc}")
            return
        except UpstreamUnreachable as exc:
            await self._unreachable(ex, send, Failure.UPSTREAM_UNREACHABLE, f"unreachable: {exc}")
            return
        try:
            await self._relay(ex, response, receive, send)
        finally:
            await response.close()

    def _prepared(self, ex: _Exchange, body: bytes) -> bytes:
        if ex.provider.prepare is None:
            return body
        try:
            upstream_body, ex.note = ex.provider.prepare(ex.method, ex.path, body)
        except Exception:  # a request we cannot read is forwarded as it came
            log.exception("could not prepare %s %s; forwarding it unchanged", ex.method, ex.path)
            return body
        return upstream_body

    async def _unreachable(self, ex: _Exchange, send: Send, failure: Failure, detail: str) -> None:
        message = f"tokenmeter: upstream {ex.provider.upstream} {detail}"
        log.warning(message)
        await self._fail(ex, send, Status.UPSTREAM_UNREACHABLE, failure, message)

    async def _fail(
        self, ex: _Exchange, send: Send, status: Status, failure: Failure, message: str
    ) -> None:
        """Answer an admitted exchange ourselves: it is recorded with ``status``."""
        ex.status, ex.http_status = status, failure.status
        await _send_local(send, failure.status, ex.provider.error_body(failure, message))

    async def _relay(
        self, ex: _Exchange, response: UpstreamResponse, receive: Receive, send: Send
    ) -> None:
        ex.headers_at = time.perf_counter()
        ex.http_status = response.status
        ex.request_id = response.header("request-id") or response.header("x-request-id")
        if ex.attribution.billing == Billing.SUBSCRIPTION:
            ex.quota = read_quota(response.header)
        content_type = response.header("content-type")
        ex.stream = content_type is not None and content_type.startswith("text/event-stream")
        if ex.provider.is_metered(ex.method, ex.path):
            encoding = response.header("content-encoding")
            ex.tap = ex.provider.make_tap(content_type, encoding)
            if ex.note is not None and ex.provider.make_filter is not None:
                ex.chunk_filter = ex.provider.make_filter(ex.note, content_type, encoding)
        elif ex.batch is not None and self._batches is not None and response.status < 400:
            encoding = response.header("content-encoding")
            ex.watch = await self._batches.watch(ex.batch, content_type, encoding)
            if ex.watch is not None and ex.watch.rewrites:
                ex.chunk_filter = ex.watch
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _response_headers(response.raw_headers, ex.chunk_filter is not None),
            }
        )
        ex.answered_at = time.perf_counter()
        # Only a stream can keep the agent waiting long enough to hang up; a JSON body follows
        # its head at once, and watching it would cost a task per request on the hot path.
        hangup = _HangupWatch(receive) if ex.stream else None
        try:
            await self._pump(ex, response, send)
        except asyncio.CancelledError:
            if hangup is None or not hangup.fired:
                raise
            hangup.absorb()
            ex.status = Status.CLIENT_DISCONNECTED
        except UpstreamBroken as exc:
            ex.status = Status.INCOMPLETE
            # No clean end: returning without finishing the body makes the server close the
            # connection, so the client sees the break it would have seen without the proxy.
            log.warning("upstream broke off %s %s: %s", ex.method, ex.path, exc)
        finally:
            if hangup is not None:
                hangup.close()

    async def _pump(self, ex: _Exchange, response: UpstreamResponse, send: Send) -> None:
        tap, chunk_filter, watch = ex.tap, ex.chunk_filter, ex.watch
        left = _content_length(response) if chunk_filter is None else None
        async for chunk in response.chunks():
            if ex.first_chunk_at is None:
                ex.first_chunk_at = time.perf_counter()
            if tap is not None:
                tap.feed(chunk)
            elif watch is not None:
                watch.feed(chunk)
            if chunk_filter is not None:
                chunk = chunk_filter.filter(chunk)
            if left is not None:
                left -= len(chunk)
                if left <= 0:  # this chunk completes the client's answer: meter first
                    self._finish(ex)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        tail = chunk_filter.flush() if chunk_filter is not None else b""
        self._finish(ex)  # before the last byte goes out (see module doc)
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _finish(self, ex: _Exchange) -> None:
        if ex.metered:
            return
        ex.metered = True
        try:
            priced = self._sink(_build_event(ex))
            if self._guard is not None and isinstance(priced, UsageEvent):
                cost = None if priced.cost is None else priced.cost.total
                self._guard.settle(ex.ticket, priced.event_id, cost)
        except Exception:  # the response is already on its way; metering must never break it
            log.exception("could not meter %s %s", ex.method, ex.path)
        if ex.watch is not None:
            try:
                ex.watch.finish(self._sink)
            except Exception:
                log.exception("could not meter the batch answer of %s %s", ex.method, ex.path)


def _build_event(ex: _Exchange) -> UsageEvent:
    end = time.perf_counter()
    facts = ex.facts
    if ex.tap is not None:
        ex.tap.finish()  # the body ended (done, cut or abandoned): read what the decoders hold
        facts = ex.tap.result()
    if facts.model is None and (ex.http_status or 0) >= 400 and ex.status is not Status.REJECTED:
        facts.model = _requested_model(ex.body)  # an error answer names no model; the request did
    return UsageEvent(
        provider=ex.provider.name,
        method=ex.method,
        path=ex.path,
        started_at=ex.started_at,
        attribution=ex.attribution,
        facts=facts,
        status=_final_status(ex, facts),
        http_status=ex.http_status,
        stream=ex.stream,
        duration_ms=(end - ex.t0) * 1000,
        upstream_headers_ms=_ms(ex.t0, ex.headers_at),
        first_token_ms=_ms(ex.t0, ex.first_chunk_at) if ex.stream else None,
        added_ms=_added_ms(ex),
        request_id=ex.request_id,
        quota=ex.quota,
    )


def _batch_exchange(ex: _Exchange, scope: Scope, headers: Mapping[bytes, bytes]) -> BatchExchange:
    """What a batch watch needs: the exchange, and the proxy's own address as the client used
    it (scheme, Host, and the path before ``/v1/``: a ``/u/…/t/…`` prefix and the provider's)."""
    host = headers.get(b"host", b"").decode("latin-1") or "127.0.0.1"
    origin = f"{scope.get('scheme', 'http')}://{host}"
    raw_path = raw_target(scope).partition("?")[0]
    prefix = raw_path[: len(raw_path) - len(ex.path)] if raw_path.endswith(ex.path) else ""
    return BatchExchange(ex.method, ex.path, ex.attribution, ex.body, ex.started_at, origin, prefix)


def _requested_model(body: bytes) -> str | None:
    """The ``model`` a JSON request named. Only for error answers (rare): the success path never
    parses a request body, and a shed request (503 ``rejected``) is not parsed either."""
    if not body or len(body) > _MAX_MODEL_SCAN or b'"model"' not in body:
        return None
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None
    model = request.get("model") if isinstance(request, dict) else None
    return model if isinstance(model, str) and 0 < len(model) <= 256 else None


def _final_status(ex: _Exchange, facts: ResponseFacts) -> Status:
    if ex.status is not Status.OK:
        return ex.status
    if (ex.http_status or 0) >= 400 or facts.error_type is not None:
        return Status.UPSTREAM_ERROR
    if ex.tap is not None and ex.stream and not facts.complete:
        return Status.INCOMPLETE
    return Status.OK


def _added_ms(ex: _Exchange) -> float | None:
    """The proxy's own time: request in -> request out, plus response head in -> out."""
    if ex.sent_at is None or ex.headers_at is None or ex.answered_at is None:
        return None
    return ((ex.sent_at - ex.t0) + (ex.answered_at - ex.headers_at)) * 1000


def _ms(t0: float, t: float | None) -> float | None:
    return None if t is None else (t - t0) * 1000


def _content_length(response: UpstreamResponse) -> int | None:
    value = response.header("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _upstream_url(provider: Provider, path: str, query: bytes) -> str:
    url = provider.upstream + path
    return f"{url}?{query.decode('latin-1')}" if query else url


def _request_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, value in raw
        if name not in HOP_BY_HOP and not name.startswith(OWN_HEADER_PREFIX)
    ]


def _response_headers(raw: list[tuple[bytes, bytes]], rewritten: bool) -> list[tuple[bytes, bytes]]:
    drop = HOP_BY_HOP if rewritten else _RESPONSE_DROP  # a filtered body has another length
    return [(n.lower(), v) for n, v in raw if n.lower() not in drop]


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_local(
    send: Send,
    status: int,
    body: bytes,
    *,
    close: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
