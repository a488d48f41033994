"""A local egress proxy, as companies run (Squid and the like), on a loopback port.

- ``CONNECT host:port`` dials the target, answers ``200 Connection established`` and relays bytes
  both ways: the TLS inside is the client's and the origin's, the proxy never reads it;
- an absolute-form request (``POST http://host:port/path HTTP/1.1``) is forwarded in origin-form
  without ``Proxy-Authorization``, and the origin's answer relayed back;
- ``credentials`` (the whole ``Basic …`` value) makes it answer ``407`` with
  ``Proxy-Authenticate`` to any request without them; ``refuse`` answers every CONNECT with that
  status instead (403: the company's policy forbids the host; 502: the proxy can't reach it).

It records what a test asserts on: every request head it got (``heads``), the CONNECT targets
(``connects``), the absolute-form request lines (``forwarded``), each ``Proxy-Authorization``
received (``authorizations``, None when absent) and the local port of every connection it
opened to an origin (``outbound_ports``: the upstream sees these as its clients' ports, so a
request whose client port is not among them did not come through the proxy).

``ConnectProxy.start()`` serves in the running loop (async tests); ``running()`` serves from a
thread of its own, for tests that drive the proxy with blocking SDK clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ConnectProxy:
    credentials: bytes | None = None
    refuse: int | None = None
    tls: ssl.SSLContext | None = None  # serve as an https:// proxy
    heads: list[bytes] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    forwarded: list[bytes] = field(default_factory=list)
    authorizations: list[bytes | None] = field(default_factory=list)
    outbound_ports: set[int] = field(default_factory=set)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, userinfo: str = "") -> str:
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls else "127.0.0.1"  # the name its certificate is for
        return f"{scheme}://{userinfo + '@' if userinfo else ''}{host}:{self.port}"

    async def start(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:  # EOF everywhere ends every handler: none is cancelled
            writer.transport.abort()  # at once, TLS included: no close_notify to wait for
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await asyncio.sleep(0.01)  # the transports' own closing callbacks run

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, authorization = self._record(head)
        if self.credentials is not None and authorization != self.credentials:
            await _answer(writer, b"407 Proxy Authentication Required", _CHALLENGE)
            return
        if method != b"CONNECT":
            await self._forward(head, reader, writer)
            return
        self.connects.append(target.decode())
        if self.refuse is not None:
            await _answer(writer, b"%d Refused by policy" % self.refuse)
            return
        host, _, port = target.decode().rpartition(":")
        try:
            origin_reader, origin_writer = await self._dial(host.strip("[]"), int(port))
        except OSError:
            await _answer(writer, b"502 Bad Gateway")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await _relay(reader, writer, origin_reader, origin_writer)

    def _record(self, head: bytes) -> tuple[bytes, bytes, bytes | None]:
        self.heads.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        authorization = _header(head, b"proxy-authorization")
        self.authorizations.append(authorization)
        return method, target, authorization

    async def _dial(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        origin_reader, origin_writer = await asyncio.open_connection(host, port)
        self._writers.add(origin_writer)
        self.outbound_ports.add(origin_writer.get_extra_info("sockname")[1])
        return origin_reader, origin_writer

    async def _forward(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Absolute-form requests, each rewritten to origin-form; answers relayed as they come
        (one origin per client connection, as the clients under test pool per origin)."""
        url = urlsplit(head.split(b" ", 2)[1].decode())
        origin_reader, origin_writer = await self._dial(url.hostname or "", url.port or 80)
        answers = asyncio.create_task(_pipe(origin_reader, writer))
        try:
            while True:
                self.forwarded.append(head.split(b"\r\n", 1)[0])
                body = await reader.readexactly(int(_header(head, b"content-length") or 0))
                origin_writer.write(_origin_form(head) + body)
                head = await reader.readuntil(b"\r\n\r\n")
                self._record(head)
        finally:
            origin_writer.close()
            await asyncio.gather(answers, return_exceptions=True)


_CHALLENGE = b'proxy-authenticate: Basic realm="corp"\r\n'


async def _answer(writer: asyncio.StreamWriter, status: bytes, extra: bytes = b"") -> None:
    writer.write(
        b"HTTP/1.1 %s\r\n%scontent-length: 0\r\nconnection: close\r\n\r\n" % (status, extra)
    )
    await writer.drain()


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def _origin_form(head: bytes) -> bytes:
    request_line, _, rest = head.partition(b"\r\n")
    method, target, version = request_line.split(b" ", 2)
    url = urlsplit(target.decode())
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [line for line in rest.split(b"\r\n") if not line.lower().startswith(b"proxy-")]
    return b"\r\n".join([b"%s %s %s" % (method, path.encode(), version), *kept])


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    origin_reader: asyncio.StreamReader,
    origin_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_pipe(reader, origin_writer), _pipe(origin_reader, writer))
    finally:
        origin_writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):  # the other side may be gone already
            sink.close()


@contextlib.contextmanager
def running(proxy: ConnectProxy) -> Iterator[ConnectProxy]:
    """Serve ``proxy`` on a loop in a thread of its own for as long as the block runs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
