"""proxy.upstream.http11 through an egress proxy: the CONNECT tunnel byte for byte, TLS to the
origin inside it (SNI, verification with the CA bundle), pooling and the keep-alive retry through
the tunnel, absolute-form requests for http, and each way a proxy can fail us. The proxy is
tests/fakes/connect_proxy.py; the origins are test_http11's scripted servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from proxy.egress import Egress
from proxy.upstream.base import Timeouts, UpstreamTimeout, UpstreamUnreachable
from proxy.upstream.http11 import Http11Upstream
from tests.fakes.connect_proxy import ConnectProxy
from tests.unit.test_http11 import HEADERS, OK, Request, answer_ok, body_of, client, serving

CREDENTIALS = b"Basic " + base64.b64encode(b"alice:pa ss")


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def origin_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_bundle(authority: trustme.CA, tmp_path: Path) -> Path:
    authority.cert_pem.write_to_path(tmp_path / "ca.pem")
    return tmp_path / "ca.pem"


@contextlib.asynccontextmanager
async def proxying(**options: Any) -> AsyncIterator[ConnectProxy]:
    proxy = await ConnectProxy(**options).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_tunnel_is_opened_once_and_pooled_per_origin(
    origin_tls: ssl.SSLContext, ca_bundle: Path
) -> None:
    async with (
        serving(answer_ok, tls=origin_tls) as server,
        proxying(credentials=CREDENTIALS) as proxy,
    ):
        egress = Egress(https_proxy=proxy.url("alice:pa%20ss"), ca_bundle=ca_bundle)
        upstream = client(egress=egress)
        for n in range(3):
            response = await upstream.send("POST", f"{server.url}/v1/x", HEADERS, b"%d" % n)
            assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()
    authority = server.url.removeprefix("https://").encode()
    assert proxy.heads == [
        b"CONNECT %s HTTP/1.1\r\nhost: %s\r\nproxy-authorization: %s\r\n\r\n"
        % (authority, authority, CREDENTIALS)
    ]
    assert server.connections == 1
    assert server.requests[0].head == (  # inside the tunnel: what a direct request would be
        b"POST /v1/x HTTP/1.1\r\nhost: %s\r\n"
        b"x-api-key: k\r\nanthropic-beta: a,b\r\nanthropic-beta: c\r\ncontent-length: 1\r\n\r\n"
        % authority
    )


async def test_keep_alive_race_through_the_tunnel_is_retried_on_a_new_tunnel(
    origin_tls: ssl.SSLContext, ca_bundle: Path
) -> None:
    async def close_the_second(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        if index == 1:
            return False
        writer.write(OK)
        return True

    async with serving(close_the_second, tls=origin_tls) as server, proxying() as proxy:
        upstream = client(egress=Egress(https_proxy=proxy.url(), ca_bundle=ca_bundle))
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"1"))
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"2")
        assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()
    assert [(r.body, r.connection) for r in server.requests] == [(b"1", 1), (b"2", 1), (b"2", 2)]
    assert len(proxy.connects) == 2


async def test_origin_certificate_is_verified_through_the_tunnel(
    origin_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    trustme.CA().cert_pem.write_to_path(tmp_path / "other.pem")
    async with serving(answer_ok, tls=origin_tls) as server, proxying() as proxy:
        upstream = client(egress=Egress(https_proxy=proxy.url(), ca_bundle=tmp_path / "other.pem"))
        with pytest.raises(UpstreamUnreachable, match="via proxy .*CERTIFICATE_VERIFY_FAILED"):
            await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        await upstream.aclose()
    assert server.requests == []


async def test_plain_http_goes_to_the_proxy_in_absolute_form() -> None:
    async with serving(answer_ok) as proxy:  # a scripted server stands in for the proxy
        egress = Egress(http_proxy=proxy.url.replace("http://", "http://alice:pa%20ss@"))
        upstream = client(egress=egress)
        for _ in range(2):
            url = "http://gateway.corp:8080/v1/x?beta=true"
            response = await upstream.send("POST", url, HEADERS, b"{}")
            assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()
    assert proxy.connections == 1  # pooled like any connection
    assert proxy.requests[1].head == (
        b"POST http://gateway.corp:8080/v1/x?beta=true HTTP/1.1\r\nhost: gateway.corp:8080\r\n"
        b"proxy-authorization: " + CREDENTIALS + b"\r\n"
        b"x-api-key: k\r\nanthropic-beta: a,b\r\nanthropic-beta: c\r\ncontent-length: 2\r\n\r\n"
    )


async def test_proxy_asking_for_credentials_on_plain_http_is_unreachable() -> None:
    async def challenge(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
        return True

    async with serving(challenge) as proxy:
        upstream = client(egress=Egress(http_proxy=proxy.url))
        with pytest.raises(UpstreamUnreachable) as caught:
            await upstream.send("POST", "http://gateway.corp:8080/v1/x", [], b"{}")
        await upstream.aclose()
    assert str(caught.value) == (
        f"egress proxy {proxy.url} refused http://gateway.corp:8080: "
        "407 Proxy Authentication Required"
    )


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        ({"credentials": CREDENTIALS}, "407 Proxy Authentication Required"),
        ({"refuse": 403}, "403 Refused by policy"),
        ({"refuse": 502}, "502 Refused by policy"),
    ],
)
async def test_refused_tunnel_is_unreachable_naming_proxy_target_and_answer(
    options: dict[str, object], answer: str
) -> None:
    async with proxying(**options) as proxy:
        upstream = client(egress=Egress(https_proxy=proxy.url("alice:wrong")))
        with pytest.raises(UpstreamUnreachable) as caught:
            await upstream.send("POST", "https://api.anthropic.com/v1/messages", [], b"{}")
        await upstream.aclose()
    assert str(caught.value) == (
        f"egress proxy http://127.0.0.1:{proxy.port} refused CONNECT api.anthropic.com:443: "
        + answer
    )
    assert proxy.connects == (["api.anthropic.com:443"] if "refuse" in options else [])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            "refused CONNECT api.anthropic.com:443: SSH-2.0-OpenSSH_9.6",
        ),
        (b"HTTP/1.1 2000 Odd\r\n\r\n", "refused CONNECT api.anthropic.com:443: 2000 Odd"),
        (b"x" * 70_000, "no end to the proxy's answer"),
    ],
)
async def test_proxy_answering_nonsense_to_connect_is_unreachable(
    answer: bytes, expected: str
) -> None:
    async def nonsense(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        await writer.drain()
        return True

    async with serving(nonsense) as proxy:
        upstream = client(egress=Egress(https_proxy=proxy.url))
        with pytest.raises(UpstreamUnreachable, match=expected):
            await upstream.send("POST", "https://api.anthropic.com/v1/messages", [], b"{}")
        await upstream.aclose()


async def test_proxy_that_hangs_up_or_is_down_is_unreachable() -> None:
    async def hang_up(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        return False

    async with serving(hang_up) as proxy:
        upstream = client(egress=Egress(https_proxy=proxy.url))
        with pytest.raises(UpstreamUnreachable, match="via proxy .*closed the connection"):
            await upstream.send("POST", "https://api.anthropic.com/v1/messages", [], b"{}")
        await upstream.aclose()
    upstream = client(egress=Egress(https_proxy=proxy.url))  # its listener is closed now
    with pytest.raises(UpstreamUnreachable, match="api.anthropic.com:443 via proxy http"):
        await upstream.send("POST", "https://api.anthropic.com/v1/messages", [], b"{}")
    await upstream.aclose()


async def test_proxy_silent_after_connect_is_a_connect_timeout() -> None:
    async def silent(request: Request, index: int, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(1.0)
        return False

    async with serving(silent) as proxy:
        timeouts = Timeouts(connect_s=0.2, read_s=5.0)
        upstream = Http11Upstream(timeouts, egress=Egress(https_proxy=proxy.url))
        with pytest.raises(UpstreamTimeout, match="connect to api.anthropic.com:443 via proxy"):
            await upstream.send("POST", "https://api.anthropic.com/v1/messages", [], b"{}")
        await upstream.aclose()


async def test_https_proxy_tls_to_the_proxy_then_to_the_origin(
    authority: trustme.CA, origin_tls: ssl.SSLContext, ca_bundle: Path
) -> None:
    async with (
        serving(answer_ok, tls=origin_tls) as server,
        proxying(tls=origin_tls) as proxy,  # the same CA signed both certificates
    ):
        upstream = client(egress=Egress(https_proxy=proxy.url(), ca_bundle=ca_bundle))
        response = await upstream.send("POST", f"{server.url}/v1/x", [], b"{}")
        assert (response.status, await body_of(response)) == (200, b"{}")
        await upstream.aclose()
    assert proxy.url().startswith("https://localhost:")
    assert proxy.connects == [server.url.removeprefix("https://")]


async def test_no_proxy_goes_direct(origin_tls: ssl.SSLContext, ca_bundle: Path) -> None:
    async with serving(answer_ok, tls=origin_tls) as server, proxying() as proxy:
        egress = Egress(https_proxy=proxy.url(), no_proxy="localhost", ca_bundle=ca_bundle)
        upstream = client(egress=egress)
        await body_of(await upstream.send("POST", f"{server.url}/v1/x", [], b"{}"))
        await upstream.aclose()
    assert proxy.heads == []
    assert server.connections == 1
