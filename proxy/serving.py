"""uvicorn's httptools protocol with the connection limits a proxy on every agent's path needs.

What uvicorn's ``HttpToolsProtocol`` enforces by itself (read in 0.54's source): a keep-alive
timeout (``timeout_keep_alive``), armed only when a response completes, and request-body flow
control (reading pauses past 64 KB unread). Nothing else: llhttp has no limit on the size of a
request head, so a 10 MB header was buffered and forwarded; no timer runs on a connection that
has not finished a request head, so a socket that never sends a byte, or sends half a head,
stays open for ever (1,000 such sockets were all open after 125 s); and nothing bounds how long a
request body may take.

``GuardedHttpToolsProtocol`` (``SERVER_OPTIONS["http"]``, for ``tokenmeter serve`` and the tests
alike) closes those gaps at the layer that sees them:

- head: from the connection's start, or from the first byte of a later request, the request head
  must be complete within ``header_timeout_s``, else 408 (or a silent close if nothing came);
- head size: more than ``max_header_bytes`` of request line and headers is a 431, counted on the
  raw bytes as they arrive so no more than one read past the limit is ever held;
- body: once the head is in, the body must be complete within ``body_timeout_s``, else 408 and
  the app sees the client gone (the forwarder then forwards nothing);
- keep-alive: an idle connection between requests is closed after ``keepalive_timeout_s``.

Each cut is counted (``tokenmeter_client_timeouts_total{phase}``), each refusal too
(``tokenmeter_requests_refused_total{reason}``), and every answer is a ``proxy.failures.Failure``
rendered as the error JSON of the provider of the path asked for. The app supplies limits,
counters and error bodies as ``ServerHooks``, found on the ASGI app uvicorn loaded (through
uvicorn's own middleware).

Cost: every deadline of a connection (head, body, keep-alive) is one phase and one clock reading
checked by a single timer per connection, re-armed at most once per shortest timeout; this also
replaces uvicorn's keep-alive ``call_later`` per response. A request arms no timer and starts no
task (measured: about 1 µs per request over uvicorn's own protocol, in-process).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from proxy.config import Settings
from proxy.failures import Failure

log = logging.getLogger("tokenmeter.serving")

# How uvicorn runs the app (`proxy.app`), for `tokenmeter serve` and the tests alike: a pass-through
# adds no headers of its own. With uvicorn's `server` and `date` on, agents got both twice:
# uvicorn's, then upstream's forwarded ones. Proxy headers off: the client address is the TCP
# peer, never what X-Forwarded-For says (whatever FORWARDED_ALLOW_IPS is set to), because the
# API's loopback-only rule judges it (proxy/api/auth.py). The HTTP protocol is uvicorn's
# httptools one with head size, head, body and keep-alive limits (below), read from the app's
# settings.
SERVER_OPTIONS: dict[str, Any] = {
    "server_header": False,
    "date_header": False,
    "proxy_headers": False,
    "http": "proxy.serving:GuardedHttpToolsProtocol",
}


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How much and how slowly a client may send (``TOKENMETER_MAX_HEADER_KB``,
    ``TOKENMETER_CLIENT_*_TIMEOUT_S``)."""

    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_header_bytes=settings.max_header_kb * 1024,
            header_timeout_s=settings.client_header_timeout_s,
            body_timeout_s=settings.client_body_timeout_s,
            keepalive_timeout_s=settings.client_keepalive_timeout_s,
        )


class ServerHooks(Protocol):
    """What the protocol needs from the app it serves."""

    @property
    def limits(self) -> ServerLimits: ...

    def error_body(self, target: bytes, failure: Failure, message: str) -> bytes: ...

    def count_timeout(self, phase: str) -> None: ...

    def count_refused(self, reason: str) -> None: ...


class _PlainHooks:
    """For an app that offers no hooks: the default limits, nothing counted."""

    def __init__(self) -> None:
        self.limits = ServerLimits.from_settings(Settings.model_construct())  # defaults only

    def error_body(self, target: bytes, failure: Failure, message: str) -> bytes:
        return json.dumps({"detail": message}).encode()

    def count_timeout(self, phase: str) -> None:
        pass

    def count_refused(self, reason: str) -> None:
        pass


def hooks_of(app: Any) -> ServerHooks:
    """The ``server_hooks`` of ``app`` or of the app it wraps (uvicorn's middlewares keep it
    as ``.app``)."""
    for _ in range(8):
        hooks: ServerHooks | None = getattr(app, "server_hooks", None)
        if hooks is not None:
            return hooks
        app = getattr(app, "app", None)
        if app is None:
            break
    return _PlainHooks()


class _HeadTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus head size, head, body and keep-alive limits (module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._hooks = hooks_of(self.app)
        limits = self._limits = self._hooks.limits
        self._tick = min(limits.header_timeout_s, limits.body_timeout_s, limits.keepalive_timeout_s)
        self.url = b""  # uvicorn sets it per request; an error before the first needs it too
        self._in_head = True  # the next bytes belong to a request head
        self._begun = False  # a request has begun and not ended (llhttp's message begin..end)
        self._in_body = False
        self._head_bytes = 0  # raw bytes received since this head began (a few more at most)
        self._phase: str | None = None  # head | body | keepalive: what the deadline is for
        self._deadline = 0.0
        self._watch: asyncio.TimerHandle | None = None

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect("head", self._limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._count_head(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        if self._in_head and self._head_bytes > self._limits.max_header_bytes:
            self._head_too_large()
        elif self._in_body and self._phase is None:  # the body did not come with its head
            self._expect("body", self._limits.body_timeout_s)

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive deadline on the watch instead of a timer per response."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._in_body:  # answered before the body ended (a refusal): the body deadline holds
            if self._phase is None:
                self._expect("body", self._limits.body_timeout_s)
        elif not self._begun:  # (a request that has begun keeps its head deadline)
            self._expect("keepalive", self._limits.keepalive_timeout_s)

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        self._expect("head", self._limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        if self._head_bytes > self._limits.max_header_bytes and self._head_size() > (
            self._limits.max_header_bytes
        ):
            raise _HeadTooLarge
        self._phase = None
        self._in_head, self._in_body = False, True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._phase == "body":
            self._phase = None
        self._in_head, self._in_body, self._head_bytes = True, False, 0
        self._begun = False
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self.pipeline:
            self._expect("keepalive", self._limits.keepalive_timeout_s)  # answered, now drained
        super().on_message_complete()

    # -- deadlines: one timer per connection, re-armed at most every ``_tick`` seconds --------

    def _expect(self, phase: str, timeout_s: float) -> None:
        """Start ``phase``, which must end within ``timeout_s``. Costs a clock read: the watch
        that checks it is armed only if none is pending. A pending watch fires within ``_tick``
        (the shortest timeout) of being armed, so never after a deadline set since."""
        self._phase, self._deadline = phase, self.loop.time() + timeout_s
        if self._watch is None:
            self._watch = self.loop.call_later(self._tick, self._check)

    def _check(self) -> None:
        self._watch = None
        if self._phase is None or self.transport.is_closing():
            return
        left = self._deadline - self.loop.time()
        if left > 0:
            self._watch = self.loop.call_later(min(left, self._tick), self._check)
            return
        phase, self._phase = self._phase, None
        self._hooks.count_timeout(phase)
        if phase == "head":
            self._head_late()
        elif phase == "body":
            self._body_late()
        else:
            self.transport.close()

    # -- refusals -----------------------------------------------------------------------------

    def _count_head(self, data: bytes) -> None:
        """Add what ``data`` holds of the request head, or more, never less: a chunk that would
        pass the limit counts up to its first blank line (a head's end: the 100 KB body that
        comes with Claude Code's head must not look like head), else all of it."""
        size = len(data)
        if self._head_bytes + size > self._limits.max_header_bytes:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                size = end + 4
        self._head_bytes += size

    def _head_size(self) -> int:
        """The request line and headers as received, give or take the separators."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _head_too_large(self) -> None:
        kb = self._limits.max_header_bytes / 1024
        message = f"tokenmeter: request line and headers larger than {kb:g} KB"
        self._refuse(Failure.HEAD_TOO_LARGE, message, "headers_too_large")

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        if isinstance(exc.__context__, _HeadTooLarge):
            self._head_too_large()
            return
        message = f"tokenmeter: invalid HTTP request: {exc}"
        self._refuse(Failure.BAD_REQUEST, message, "bad_request")

    def _refuse(self, failure: Failure, message: str, reason: str) -> None:
        self._hooks.count_refused(reason)
        self._answer_and_close(failure, message + "; nothing was forwarded")

    def _head_late(self) -> None:
        if not self._begun:  # nothing of a request came: nothing to answer
            self.transport.close()
            return
        timeout = self._limits.header_timeout_s
        message = f"tokenmeter: request head not complete within {timeout:g} s"
        self._answer_and_close(Failure.CLIENT_TIMEOUT, message)

    def _body_late(self) -> None:
        cycle = self.cycle
        answered = cycle is None or cycle.response_started
        if cycle is not None:  # the app's receive() now says the client is gone
            cycle.disconnected = True
            cycle.message_event.set()
        if answered:
            self.transport.close()
            return
        timeout = self._limits.body_timeout_s
        message = f"tokenmeter: request body not complete within {timeout:g} s; not forwarded"
        self._answer_and_close(Failure.CLIENT_TIMEOUT, message)

    def _answer_and_close(self, failure: Failure, message: str) -> None:
        """Answer and close, unless an answer now would be read as part of another one."""
        self._phase = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head:  # a request pipelined behind one still being answered
                cycle.keep_alive = False  # that answer ends the connection; nothing more is read
                self.flow.pause_reading()
                return
            if cycle.response_started:  # this request's own answer is on the wire: cut it
                self.transport.close()
                return
        body = self._hooks.error_body(self.url, failure, message)
        head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(STATUS_LINE[failure.status] + head % len(body) + body)
        self.transport.close()
