"""proxy.upstream.http11, the default client, against a scripted HTTP/1.1 server on loopback.

Each test's server reads requests off the socket as they come and answers with raw bytes the test
chooses, so the wire is exact: framing, keep-alive, a server closing a pooled connection, a
half-sent answer, a silent one. The proxy-level contract (the same for all three clients) is in
tests/integration/test_upstream_clients.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from proxy.egress import Egress
from proxy.upstream.base import (
    RawHeaders,
    Timeouts,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.upstream.http11 import Http11Upstream, _parse_origin

HEADERS: RawHeaders = [(b"x-api-key", b"k"), (b"anthropic-beta", b"a,b"), (b"anthropic-beta", b"c")]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


@dataclass
class Request:
    head: bytes
    body: bytes
    connection: int


# A scenario answers one request: (request, its number on this connection, writer) -> keep going?
Scenario = Callable[[Request, int, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Server:
    """Accepts connections; reads each request by its content-length; lets ``scenario`` answer."""

    scenario: Scenario
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    url: str = ""
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: list[asyncio.Task[None]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        number, index = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = Request(head, await reader.readexactly(length), number)
                self.requests.append(request)
                if not await self.scenario(request, index, writer):
                    break
                index += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(scenario: Scenario, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(scenario)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://localhost:{port}"
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:  # EOF ends every handler's read: none is left pending
            writer.close()
        if server.handlers:  # none when no connection got as far as the server
            await asyncio.wait(server.handlers, timeout=5)


def client(read_s: float = 5.0, **kwargs: Any) -> Http11Upstream:
    return Http11Upstream(Timeouts(connect_s=2.0, read_s=read_s), **kwargs)


async def body_of(response: UpstreamResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.close()


async def answer_ok(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(OK)
    await writer.drain()
    return True


async def test_request_goes_out_exactly_and_the_connection_is_reused() -> None:
    async with serving(answer_ok) as server:
        upstream = client()
        for n in range(3):
            response = await upstream.send(
                "POST", f"{server.url}/v1/messages?beta=true", HEADERS, b'{"n":%d}' % n
            )
            assert (response.status, await body_of(response)) == (200, b"{}")
            assert response.header("Content-Type") == "application/json"
        await upstream.aclose()
    assert server.connections == 1
    port = server.url.rsplit(":", 1)[1]
    assert server.requests[0].head == (
        b"POST /v1/messages?beta=true HTTP/1.1\r\n"
        b"host: localhost:" + port.encode() + b"\r\n"
        b"x-api-key: k\r\nanthropic-beta: a,b\r\nanthropic-beta: c\r\n"
        b"content-length: 7\r\n\r\n"
    )
    assert [r.body for r in server.requests] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']


async def test_get_without_body_has_no_content_length() -> None:
    async with serving(answer_ok) as server:
        upstream = client()
        await body_of(await upstream.send("GET", f"{server.url}/v1/models", [], b""))
        await upstream.aclose()
    assert b"content-length" not in server.requests[0].head
    assert server.requests[0].head.startswith(b"GET /v1/models HTTP/1.1\r\n")


async def test_chunked_body_arrives_unframed_and_undecoded() -> None:
    gzipped = b"\x1f\x8b\x08\x00fake-gzip-bytes"

    async def chunked(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for part in (gzipped[:5], gzipped[5:]):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        return True

    async with serving(chunked) as server:
        upstream = client()
        response = await upstream.send("POST", f"{server.url}/v1/messages", HEADERS, b"{}")
        assert response.header("content-encoding") == "gzip"
        assert (b"transfer-encoding", b"chunked") in response.raw_headers
        assert await body_of(response) == gzipped
        await body_of(await upstream.send("POST", f"{server.url}/v1/messages", HEADERS, b"{}"))
        await upstream.aclose()
    assert server.connections == 1  # the chunked answer ended cleanly: the line was reused


async def test_body_delimited_by_close_is_complete_and_not_reused() -> None:
    async def until_close(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        return False  # the server closes: that is the end of the body

    async with serving(until_close) as server:
        upstream = client()
        for _ in range(2):
            response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
            assert await body_of(response) == b"part one, part two"
        await upstream.aclose()
    assert server.connections == 2


async def test_keep_alive_race_is_retried_once_on_a_new_connection() -> None:
    async def close_the_second(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        if index == 1:  # the server timed the idle connection out as our request arrived
            return False
        writer.write(OK)
        return True

    async with serving(close_the_second) as server:
        upstream = client()
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"1"))
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"2")
        assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()
    assert [(r.body, r.connection) for r in server.requests] == [(b"1", 1), (b"2", 1), (b"2", 2)]


async def test_fresh_connection_closed_without_answer_is_unreachable_and_not_retried() -> None:
    async def hang_up(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        return False

    async with serving(hang_up) as server:
        upstream = client()
        with pytest.raises(UpstreamUnreachable, match="no answer from localhost"):
            await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        await upstream.aclose()
    assert len(server.requests) == 1


async def test_half_an_answer_on_a_reused_connection_is_not_retried() -> None:
    async def half_head(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK if index == 0 else b"HTTP/1.1 200 OK\r\ncontent-")
        await writer.drain()
        return index == 0

    async with serving(half_head) as server:
        upstream = client()
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"{}"))
        with pytest.raises(UpstreamUnreachable):
            await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        await upstream.aclose()
    assert len(server.requests) == 2  # upstream had started answering: never sent twice


async def test_body_cut_midway_is_broken() -> None:
    async def cut(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()
        return False

    async with serving(cut) as server:
        upstream = client()
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        seen: list[bytes] = []

        async def read_all() -> None:
            async for chunk in response.chunks():
                seen.append(chunk)

        with pytest.raises(UpstreamBroken):
            await read_all()
        assert b"".join(seen) == b"only this"
        await response.close()
        await upstream.aclose()


async def test_silence_before_the_head_is_a_timeout_and_during_the_body_is_broken() -> None:
    async def stall(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        if request.body == b"body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await writer.drain()
        await asyncio.sleep(1.0)
        return False

    async with serving(stall) as server:
        upstream = client(read_s=0.2)
        with pytest.raises(UpstreamTimeout):
            await upstream.send("POST", f"{server.url}/v1/x", [], b"head")
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"body")
        with pytest.raises(UpstreamBroken, match="sent nothing for 0.2 s"):
            await body_of(response)
        await upstream.aclose()


async def test_refused_connection_is_unreachable() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    upstream = client()
    with pytest.raises(UpstreamUnreachable, match=f"connect to 127.0.0.1:{port}"):
        await upstream.send("POST", f"http://127.0.0.1:{port}/v1/x", [], b"{}")
    await upstream.aclose()


async def test_unparsable_answer_is_unreachable() -> None:
    async def garbage(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return True

    async with serving(garbage) as server:
        upstream = client()
        with pytest.raises(UpstreamUnreachable, match="unparsable response"):
            await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        await upstream.aclose()


async def test_interim_answer_is_skipped() -> None:
    async def with_continue(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        return True

    async with serving(with_continue) as server:
        upstream = client()
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()


async def test_head_answer_has_no_body_and_its_connection_is_not_reused() -> None:
    async def head_answer(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        return True

    async with serving(head_answer) as server:
        upstream = client()
        for _ in range(2):
            response = await upstream.send("HEAD", f"{server.url}/v1/files/f", [], b"")
            assert (response.status, await body_of(response)) == (200, b"")
        await upstream.aclose()
    assert server.connections == 2


async def test_response_left_unread_closes_its_connection() -> None:
    async def big(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100_000)
        await writer.drain()
        return True

    async with serving(big) as server:
        upstream = client()
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        await response.close()  # the agent hung up before the body
        assert len(await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b""))) == (
            100_000
        )
        await upstream.aclose()
    assert server.connections == 2


async def test_slow_reader_pauses_upstream_without_timing_out() -> None:
    size = 3 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def flood(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for start in range(0, size, 65536):
            writer.write(payload[start : start + 65536])
            await writer.drain()
        return True

    async with serving(flood) as server:
        upstream = client(read_s=0.3)
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        received = bytearray()
        paused_seen = False
        async for chunk in response.chunks():
            received += chunk
            if not paused_seen and len(received) > 64 * 1024:
                await asyncio.sleep(0.6)  # slower than the read timeout: must not count
                paused_seen = response._conn._paused  # type: ignore[attr-defined]  # internal state, read on purpose
        await response.close()
        await upstream.aclose()
    assert paused_seen
    assert bytes(received) == payload


async def test_idle_connection_that_speaks_is_dropped() -> None:
    async def chatty(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")  # nobody asked
        return True

    async with serving(chatty) as server:
        upstream = client()
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"{}"))
        await asyncio.sleep(0.2)
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        assert await body_of(response) == b"{}"
        await upstream.aclose()
    assert server.connections == 2


async def test_idle_timeout_retires_old_connections() -> None:
    async with serving(answer_ok) as server:
        upstream = client(idle_timeout_s=0.05)
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"{}"))
        await asyncio.sleep(0.1)
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"{}"))
        await upstream.aclose()
    assert server.connections == 2


async def test_tls_with_server_name_and_verification(tmp_path: Path) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    authority.cert_pem.write_to_path(tmp_path / "ca.pem")
    async with serving(answer_ok, tls=server_context) as server:
        upstream = client(egress=Egress(ca_bundle=tmp_path / "ca.pem"))
        response = await upstream.send("POST", f"{server.url}/v1/x", HEADERS, b"{}")
        assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()
        untrusting = client()  # the system's CAs do not know this one
        with pytest.raises(UpstreamUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.send("POST", f"{server.url}/v1/x", HEADERS, b"{}")
        await untrusting.aclose()


@pytest.mark.parametrize(
    ("scheme", "authority", "expected"),
    [
        ("https", "api.anthropic.com", ("api.anthropic.com", 443, True)),
        ("http", "127.0.0.1:9001", ("127.0.0.1", 9001, False)),
        ("http", "[::1]:8080", ("::1", 8080, False)),
        ("https", "[::1]", ("::1", 443, True)),
    ],
)
def test_origin_of_authority(scheme: str, authority: str, expected: tuple[str, int, bool]) -> None:
    origin = _parse_origin(scheme, authority)
    assert (origin.host, origin.port, origin.tls) == expected
    assert origin.host_header == authority.encode()


async def test_not_an_http_url_is_unreachable() -> None:
    with pytest.raises(UpstreamUnreachable, match="not an http"):
        await client().send("POST", "ftp://example/x", [], b"")
