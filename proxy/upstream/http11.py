"""The default upstream client: a small HTTP/1.1 client on asyncio protocols and httptools.

Why not aiohttp: ``bench/`` measured aiohttp's client at ~180 µs of CPU per proxied request with
a 100 KB body on this project's machine, against ~50 µs for the same exchange written straight
to an asyncio transport and parsed by httptools (llhttp, the parser uvicorn already uses for our
server side). Most of the difference is per-request bookkeeping this proxy never needs: cookie
jars, redirects, auto headers, multidict copies, tracing hooks, payload wrappers. The proxy's
needs are narrow: a handful of upstream origins, requests whose body is already in memory,
responses passed through undecoded. ``TOKENMETER_UPSTREAM_CLIENT=aiohttp|httpx`` selects the
library clients instead (``proxy.upstream.aiohttp``, ``proxy.upstream.httpx``); all three keep
the contract and error tree of ``proxy.upstream.base``.

Contract (``proxy.upstream.base``'s, as every client keeps it):
- the request goes out with exactly the given headers plus ``host`` and ``content-length``;
  nothing else is added (no user-agent, accept or accept-encoding of our own), except
  ``proxy-authorization`` for an egress proxy that has credentials, sent to it alone;
- the route is the ``proxy.egress.Egress``'s, decided once per origin: direct; or, through the
  egress proxy, a CONNECT tunnel for https (TLS to the origin inside it, with SNI and
  verification, so the proxy sees only the host name) and absolute-form requests for http (what
  every proxy accepts: Squid's default refuses CONNECT to ports other than 443). A proxy that
  refuses the tunnel (407, 403, 502, ...) is an ``UpstreamUnreachable`` naming the proxy (never
  its credentials), the target and its answer. With no proxy configured nothing is added to the
  per-request path: the route is part of the cached origin;
- the response body comes back as received on the wire, chunk by chunk (chunked framing
  removed, content-encoding untouched), with back-pressure: reading from upstream pauses while
  more than ``_HIGH_WATER`` bytes wait for a slow client;
- connections (direct, tunnelled, or to the proxy for http) are kept alive and pooled per
  origin (LIFO, at most ``max_idle_per_origin`` idle, each idle at most ``idle_timeout_s``); a
  response not read to its end closes its connection instead of returning it;
- a request sent on a *reused* connection that the server closed before answering a single
  byte (the keep-alive race: the server timed the idle connection out as we wrote) is sent
  again, once, on a new connection. Nothing of it reached the application, and the agent's
  SDK would retry the 502 we would otherwise answer;
- errors: no connection or no answer → ``UpstreamUnreachable``; nothing within the connect or
  read timeout → ``UpstreamTimeout``; the body broke off (closed, reset, unparsable, silent past
  the read timeout) → ``UpstreamBroken``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import httptools

from proxy.egress import PROXY_AUTH_REQUIRED, Egress, ProxyServer, refusal
from proxy.upstream.base import (
    RawHeaders,
    Timeouts,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

_HIGH_WATER = 256 * 1024  # buffered response bytes before reading from upstream pauses
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_MAX_CONNECT_ANSWER = 64 * 1024  # bytes of a proxy's answer to CONNECT before we give up on it
_P = TypeVar("_P", bound=asyncio.Protocol)


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where to connect, from the scheme and authority of a URL, and the route there; cached
    per authority, so routing costs nothing per request."""

    host: str
    port: int
    tls: bool
    host_header: bytes
    head_lines: bytes  # after the request line: host (and proxy-authorization, for http)
    proxy: ProxyServer | None = None  # the egress proxy this origin is reached through
    root: bytes = b"/"  # the target of "/": origin-form, or absolute-form to a proxy (http)
    tunnel_request: bytes = b""  # CONNECT ... to the proxy (https through a proxy)


def _split_url(url: str, origins: dict[str, _Origin], egress: Egress) -> tuple[_Origin, bytes]:
    """(origin, request target) of an absolute http(s) URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise UpstreamUnreachable(f"not an http(s) URL: {url!r}")
    authority, slash, path = rest.partition("/")
    key = f"{scheme}://{authority}"
    origin = origins.get(key)
    if origin is None:
        origin = origins[key] = _parse_origin(scheme, authority, egress)
    return origin, origin.root + path.encode("latin-1") if slash else origin.root


def _parse_origin(scheme: str, authority: str, egress: Egress | None = None) -> _Origin:
    tls = scheme == "https"
    host, port, explicit_port = authority, 443 if tls else 80, False
    if authority.startswith("["):  # [IPv6]:port
        end = authority.index("]")
        host, rest = authority[1:end], authority[end + 1 :]
        if rest.startswith(":"):
            port, explicit_port = int(rest[1:]), True
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
        port, explicit_port = int(port_text), True
    host_header = authority.encode("idna")
    head_lines = b"host: %s\r\n" % host_header
    proxy = egress.proxy_for(scheme, host, port) if egress is not None else None
    if proxy is None:
        return _Origin(host, port, tls, host_header, head_lines)
    auth = b"proxy-authorization: %s\r\n" % proxy.authorization if proxy.authorization else b""
    if not tls:  # absolute-form requests on a connection to the proxy, each with the credentials
        root = b"http://%s/" % host_header
        return _Origin(host, port, tls, host_header, head_lines + auth, proxy, root)
    target = host_header if explicit_port else b"%s:%d" % (host_header, port)
    tunnel = b"CONNECT %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (target, target, auth)
    return _Origin(host, port, tls, host_header, head_lines, proxy, tunnel_request=tunnel)


def _where(origin: _Origin) -> str:
    """``host:port``, and the proxy on the way if any: for error messages (no credentials)."""
    direct = f"{origin.host}:{origin.port}"
    return direct if origin.proxy is None else f"{direct} via proxy {origin.proxy.url}"


def _no_delay(transport: asyncio.BaseTransport) -> None:
    raw = transport.get_extra_info("socket")
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection(asyncio.Protocol):
    """One upstream connection; carries one exchange at a time (no pipelining)."""

    def __init__(self, origin: _Origin, read_timeout_s: float) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.active = False  # an exchange is under way (data while idle is a protocol error)
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._read_timeout_s = read_timeout_s
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: RawHeaders = []
        self.headers_done = False
        self.complete = False
        self.received = 0  # response bytes seen, framing included
        self.error: Exception | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._framed = False  # content-length or chunked: the end is in the data, not the close
        self._expect_body = True
        self._spoiled = False  # the parser's state can't be trusted for another exchange
        self._keep_alive = False  # read at the end of the message: llhttp resets it after
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        _no_delay(transport)

    def data_received(self, data: bytes) -> None:
        if not self.active:  # an idle connection has nothing to say: don't reuse it
            self._close_transport()
            return
        self.received += len(data)
        self._last_activity = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ValueError(f"unparsable response from upstream: {exc}"))
            self._close_transport()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.complete or self.error is not None:
            return
        if self.headers_done and not self._framed:
            self.complete = True  # a body delimited by the close: this is its end
            self._wake()
            return
        self._fail(exc or ConnectionResetError("upstream closed the connection"))

    def pause_writing(self) -> None:  # the request body is in memory; the transport buffers it
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self.headers = []
            return
        self.headers_done = True
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                self._framed = True
        if self.status in (204, 304):
            self._framed = True
        if not self._expect_body:  # llhttp can't know a HEAD answer has no body
            self._framed = self.complete = self._spoiled = True
            self._cancel_timer()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim (1xx) answer
            return
        self._keep_alive = self._parser.should_keep_alive()
        self.complete = True
        self._cancel_timer()
        self._wake()

    # -- the exchange -----------------------------------------------------------------------

    def send(self, head: bytes, body: bytes, *, expect_body: bool = True) -> None:
        assert self.transport is not None
        self._reset()
        self.active = True
        self._expect_body = expect_body
        self._last_activity = self._loop.time()
        self._timer = self._loop.call_later(self._read_timeout_s, self._check_timeout)
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)

    async def wait_headers(self) -> None:
        while not self.headers_done and self.error is None:
            await self._wait()
        if not self.headers_done:
            assert self.error is not None
            raise self.error

    async def next_chunk(self) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        while not self._chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()
        # All that waits, as one: a burst of SSE events is relayed and tapped once, not per event.
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:  # the client took it all: read on
            self._paused = False
            self._last_activity = self._loop.time()
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and not self._spoiled
            and self.error is None
            and not self._chunks
            and self._keep_alive
        )

    def usable_after(self, idle_since: float) -> bool:
        """Idle since ``idle_since`` or later, and still open at both ends as far as we know."""
        transport = self.transport
        return (
            not self.closed
            and transport is not None
            and not transport.is_closing()
            and self.idle_since >= idle_since
        )

    def close(self) -> None:
        self._cancel_timer()
        self._close_transport()

    # -- internals --------------------------------------------------------------------------

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self._cancel_timer()
        self._wake()

    def _check_timeout(self) -> None:
        """One timer per read-timeout window, re-armed for what is left of it: cheaper than
        re-arming a timer for every chunk. A paused read is the client's slowness: not counted."""
        self._timer = None
        if self.complete or self.error is not None:
            return
        left = self._last_activity + self._read_timeout_s - self._loop.time()
        if self._paused or left > 0:
            self._timer = self._loop.call_later(max(left, 0.05), self._check_timeout)
            return
        self._fail(TimeoutError(f"upstream sent nothing for {self._read_timeout_s:g} s"))
        self._close_transport()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _Tunnel(asyncio.Protocol):
    """A connection to the egress proxy that asks it for a tunnel to an https origin (CONNECT),
    then speaks TLS to the origin through it: the proxy sees the host name, never the bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._answer = bytearray()
        self._answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        _no_delay(transport)

    def data_received(self, data: bytes) -> None:
        if self._answered.done():
            return
        self._answer += data
        if b"\r\n\r\n" in self._answer:
            self._answered.set_result(bytes(self._answer))
        elif len(self._answer) > _MAX_CONNECT_ANSWER:
            self._answered.set_exception(ConnectionError("no end to the proxy's answer"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._answered.done():
            closed = ConnectionResetError("the proxy closed the connection")
            self._answered.set_exception(exc or closed)

    async def open(
        self, origin: _Origin, context: ssl.SSLContext, protocol: _Connection
    ) -> _Connection:
        """CONNECT, then TLS to the origin on the same socket; ``protocol`` carries it on."""
        assert self.transport is not None
        try:
            self.transport.write(origin.tunnel_request)
            _check_tunnel(await self._answered, origin)
            tls = await asyncio.get_running_loop().start_tls(
                self.transport, protocol, context, server_hostname=origin.host
            )
        except BaseException:
            self.transport.close()
            raise
        assert tls is not None
        protocol.connection_made(tls)
        return protocol


def _check_tunnel(answer: bytes, origin: _Origin) -> None:
    """Any 2xx opens the tunnel (RFC 9110 9.3.6); anything else is the proxy's refusal."""
    line = answer.partition(b"\r\n")[0]
    version, _, status = line.partition(b" ")
    if version.startswith(b"HTTP/1.") and status[:1] == b"2" and status[3:4] in (b"", b" "):
        return
    assert origin.proxy is not None
    target = origin.tunnel_request.partition(b" HTTP/1.1")[0].decode("latin-1")
    said = (status if version.startswith(b"HTTP/") else line).decode("latin-1")
    raise UpstreamUnreachable(refusal(origin.proxy, target, said))


class _Response:
    """One upstream response; ``chunks()`` yields its body, ``close()`` releases the connection."""

    __slots__ = ("_client", "_conn", "_lookup", "raw_headers", "status")

    def __init__(self, client: Http11Upstream, conn: _Connection) -> None:
        self._client = client
        self._conn = conn
        self.status = conn.status
        self.raw_headers = conn.headers
        self._lookup: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        if self._lookup is None:
            lookup: dict[str, str] = {}
            for raw_name, value in self.raw_headers:
                lookup.setdefault(raw_name.decode("latin-1").lower(), value.decode("latin-1"))
            self._lookup = lookup
        return self._lookup.get(name.lower())

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            try:
                chunk = await conn.next_chunk()
            except Exception as exc:
                raise UpstreamBroken(repr(exc)) from exc
            if chunk is None:
                return
            yield chunk

    async def close(self) -> None:
        self._client._release(self._conn)


class Http11Upstream:
    """The pooled HTTP/1.1 client (see module doc); built without I/O, usable in any loop."""

    def __init__(
        self,
        timeouts: Timeouts,
        *,
        egress: Egress | None = None,
        max_idle_per_origin: int = 256,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self._timeouts = timeouts
        self._egress = egress or Egress()
        self._max_idle = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: bytes
    ) -> UpstreamResponse:
        origin, target = _split_url(url, self._origins, self._egress)
        head = _request_head(method, target, origin, headers, body)
        conn = await self._connection(origin)
        try:
            try:
                await self._send_on(conn, method, head, body)
            except ConnectionError:
                if not (conn.reused and conn.received == 0):
                    raise
                conn = await self._connect(origin)  # the keep-alive race: once more, new line
                await self._send_on(conn, method, head, body)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"no answer from {origin.host}: {exc!r}") from exc
        except (OSError, ValueError) as exc:
            raise UpstreamUnreachable(f"no answer from {origin.host}: {exc!r}") from exc
        if conn.status == 407 and origin.proxy is not None and not origin.tls:
            self._discard(conn)  # the proxy's own answer to an absolute-form request
            asked = origin.root.decode("latin-1").rstrip("/")
            raise UpstreamUnreachable(refusal(origin.proxy, asked, PROXY_AUTH_REQUIRED))
        return _Response(self, conn)

    async def _send_on(self, conn: _Connection, method: str, head: bytes, body: bytes) -> None:
        try:
            conn.send(head, body, expect_body=method != "HEAD")
            await conn.wait_headers()
        except BaseException:
            self._discard(conn)
            raise

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        self._busy.clear()

    # -- pool -------------------------------------------------------------------------------

    async def _connection(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if conn.usable_after(now - self._idle_timeout_s):
                    conn.reused = True
                    self._busy.add(conn)
                    return conn
                conn.close()
        return await self._connect(origin)

    async def _connect(self, origin: _Origin) -> _Connection:
        """A new connection to ``origin`` (the whole of it within the connect timeout)."""
        try:
            async with asyncio.timeout(self._timeouts.connect_s):
                conn = await self._open(origin)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connect to {_where(origin)}: {exc!r}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamUnreachable(f"connect to {_where(origin)}: {exc!r}") from exc
        self._busy.add(conn)
        return conn

    async def _open(self, origin: _Origin) -> _Connection:
        def connection() -> _Connection:
            return _Connection(origin, self._timeouts.read_s)

        proxy = origin.proxy
        if proxy is None:
            return await self._dial(origin.host, origin.port, origin.tls, connection)
        if not origin.tls:
            return await self._dial(proxy.host, proxy.port, proxy.tls, connection)
        tunnel = await self._dial(proxy.host, proxy.port, proxy.tls, _Tunnel)
        return await tunnel.open(origin, self._egress.tls_context(), connection())

    async def _dial(self, host: str, port: int, tls: bool, protocol: Callable[[], _P]) -> _P:
        context = self._egress.tls_context() if tls else None
        _, connected = await asyncio.get_running_loop().create_connection(
            protocol, host, port, ssl=context, server_hostname=host if tls else None
        )
        return connected

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        conn.active = False
        if not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        conn.close()


def _request_head(
    method: str, target: bytes, origin: _Origin, headers: RawHeaders, body: bytes
) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\n%s" % (method.encode("ascii"), target, origin.head_lines)]
    lines += [b"%s: %s\r\n" % pair for pair in headers]
    if body or method in _BODY_METHODS:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    return b"".join(lines)
