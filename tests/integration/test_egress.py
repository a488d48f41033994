"""Behind a company's egress proxy, with the company's own CA: each upstream client (http11,
aiohttp, httpx) reaches a TLS upstream only through a CONNECT proxy, honours NO_PROXY, verifies
with TOKENMETER_CA_BUNDLE, sends the proxy's credentials to the proxy alone, and answers a
proxy's refusal with a clear 502 in the provider's format. The real anthropic SDK is the agent;
the upstream is tests/fakes/anthropic_upstream.py served over TLS with a certificate from a
throwaway CA (trustme); the proxy is tests/fakes/connect_proxy.py.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import anthropic
import httpx
import pytest
import trustme
from anthropic.types.message_create_params import MessageCreateParamsBase

from tests.conftest import Proxy
from tests.fakes.anthropic_format import Json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.connect_proxy import ConnectProxy, running
from tests.servers import ServerThread

CLIENTS = ["http11", "aiohttp", "httpx"]
# A request as the SDK types it: `claude.messages.create(**BODY)` is checked key by key.
BODY: MessageCreateParamsBase = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}
PASSWORD = "s3cr3t/@pass"
CREDENTIALS = b"Basic " + base64.b64encode(f"alice:{PASSWORD}".encode())
USERINFO = "alice:s3cr3t%2F%40pass"  # the password, percent-encoded in the proxy URL


@dataclass
class Pki:
    authority: trustme.CA
    ca_bundle: Path  # the company CA that signed the upstream's certificate
    wrong_bundle: Path  # another CA


@dataclass
class TlsUpstream:
    fake: FakeAnthropic
    url: str  # https://localhost:<port>
    authority: str  # localhost:<port>, as the proxy is asked for it


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    path = tmp_path_factory.mktemp("pki")
    authority = trustme.CA()
    authority.cert_pem.write_to_path(path / "company-ca.pem")
    trustme.CA().cert_pem.write_to_path(path / "other-ca.pem")
    return Pki(authority, path / "company-ca.pem", path / "other-ca.pem")


class ServerTls(TypedDict):
    """uvicorn's TLS options for a server with a certificate of ``pki``."""

    ssl_keyfile: str
    ssl_certfile: str


def _server_tls(pki: Pki, path: Path, name: str) -> ServerTls:
    cert = pki.authority.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(path / f"{name}.key")
    cert.cert_chain_pems[0].write_to_path(path / f"{name}.pem")
    return {"ssl_keyfile": str(path / f"{name}.key"), "ssl_certfile": str(path / f"{name}.pem")}


@pytest.fixture
def tls_upstream(pki: Pki, tmp_path: Path) -> Iterator[TlsUpstream]:
    fake = FakeAnthropic()
    with ServerThread(fake, **_server_tls(pki, tmp_path, "upstream")) as server:
        authority = f"localhost:{server.port}"
        yield TlsUpstream(fake, f"https://{authority}", authority)


@pytest.fixture
def egress_proxy() -> Iterator[ConnectProxy]:
    with running(ConnectProxy()) as proxy:
        yield proxy


@pytest.fixture
def through(
    tls_upstream: TlsUpstream, pki: Pki, make_proxy: Callable[..., Proxy]
) -> Callable[..., Proxy]:
    """tokenmeter with its Anthropic upstream on the TLS fake, trusting the company CA. (The
    fake starts first so it stops last: tokenmeter closes its connections to it before.)"""

    def make(**overrides: object) -> Proxy:
        fields = {"anthropic_upstream": tls_upstream.url, "ca_bundle": pki.ca_bundle, **overrides}
        return make_proxy(**fields)

    return make


def _claude(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test-123", max_retries=0)


def _text(message: anthropic.types.Message) -> str:
    """The text of the answer's first content block (the fake answers with one text block)."""
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    return block.text


def _error_of(proxy: Proxy) -> tuple[int, Json]:
    with _claude(proxy) as claude, pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(**BODY)
    return caught.value.status_code, caught.value.response.json()


@pytest.mark.parametrize("client", CLIENTS)
def test_https_upstream_is_reached_only_through_the_connect_proxy(
    tls_upstream: TlsUpstream,
    through: Callable[..., Proxy],
    egress_proxy: ConnectProxy,
    client: str,
) -> None:
    proxy = through(upstream_client=client, https_proxy=egress_proxy.url())
    headers = {"x-tokenmeter-task": f"t-{client}"}
    with _claude(proxy) as claude:
        message = claude.messages.create(**BODY, extra_headers=headers)
        with claude.messages.stream(**BODY, extra_headers=headers) as stream:
            streamed = stream.get_final_message()
    assert _text(message) == _text(streamed) == "Hi! How can I help?"
    assert egress_proxy.connects == [tls_upstream.authority]  # one tunnel, pooled, reused
    received = tls_upstream.fake.requests
    assert len(received) == 2
    for request in received:  # each came from a socket the proxy opened, and carries no trace
        assert request.client is not None
        assert request.client[1] in egress_proxy.outbound_ports
        assert request.header("proxy-authorization") is None
    assert proxy.task(f"t-{client}", 2)["tokens"]["cache_read"] == 600


@pytest.mark.parametrize("client", CLIENTS)
def test_no_proxy_goes_direct(
    tls_upstream: TlsUpstream,
    through: Callable[..., Proxy],
    egress_proxy: ConnectProxy,
    client: str,
) -> None:
    proxy = through(
        upstream_client=client, https_proxy=egress_proxy.url(), no_proxy="example.com,localhost"
    )
    with _claude(proxy) as claude:
        claude.messages.create(**BODY)
    assert egress_proxy.connects == []
    assert egress_proxy.heads == []
    assert len(tls_upstream.fake.requests) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_upstream_certificate_is_verified_with_the_ca_bundle(
    tls_upstream: TlsUpstream,
    through: Callable[..., Proxy],
    egress_proxy: ConnectProxy,
    pki: Pki,
    client: str,
) -> None:
    wrong = through(
        upstream_client=client, https_proxy=egress_proxy.url(), ca_bundle=pki.wrong_bundle
    )
    status, error = _error_of(wrong)
    assert status == 502
    assert error["type"] == "error"
    assert "CERTIFICATE_VERIFY_FAILED" in str(error["error"])
    assert tls_upstream.fake.requests == []
    assert egress_proxy.connects == [tls_upstream.authority]  # the tunnel opened; TLS refused
    right = through(upstream_client=client, https_proxy=egress_proxy.url())
    with _claude(right) as claude:
        assert claude.messages.create(**BODY).usage.output_tokens == 7
    assert len(tls_upstream.fake.requests) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_proxy_credentials_go_to_the_proxy_alone(
    tls_upstream: TlsUpstream,
    through: Callable[..., Proxy],
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running(ConnectProxy(credentials=CREDENTIALS)) as egress_proxy:
        proxy = through(upstream_client=client, https_proxy=egress_proxy.url(USERINFO))
        with _claude(proxy) as claude:
            claude.messages.create(**BODY)
        assert egress_proxy.authorizations == [CREDENTIALS]
        assert tls_upstream.fake.requests[0].header("proxy-authorization") is None

        caplog.set_level(logging.DEBUG)
        wrong = through(upstream_client=client, https_proxy=egress_proxy.url("alice:wrong"))
        status, error = _error_of(wrong)
    assert status == 502
    assert error["error"] == {
        "type": "api_error",
        "message": f"tokenmeter: upstream {tls_upstream.url} unreachable: egress proxy "
        f"{egress_proxy.url()} refused CONNECT {tls_upstream.authority}: "
        "407 Proxy Authentication Required",
    }
    assert len(tls_upstream.fake.requests) == 1
    assert f"{tls_upstream.url} (via proxy {egress_proxy.url()})" in caplog.text  # at start
    assert "407 Proxy Authentication Required" in caplog.text  # logged, and nothing secret is
    for secret in (PASSWORD, "wrong", CREDENTIALS.decode(), USERINFO):
        assert secret not in caplog.text
        assert secret not in repr(proxy.app.parts.settings)


@pytest.mark.parametrize("client", CLIENTS)
def test_proxy_refusing_the_tunnel_is_a_clear_502(
    tls_upstream: TlsUpstream, through: Callable[..., Proxy], client: str
) -> None:
    with running(ConnectProxy(refuse=403)) as egress_proxy:
        proxy = through(upstream_client=client, https_proxy=egress_proxy.url())
        status, error = _error_of(proxy)
    assert status == 502
    assert error["error"]["message"].endswith(
        f"egress proxy {egress_proxy.url()} refused CONNECT {tls_upstream.authority}: "
        "403 Refused by policy"
    )
    assert tls_upstream.fake.requests == []


@pytest.mark.parametrize("client", CLIENTS)
def test_https_proxy_is_verified_with_the_ca_bundle_too(
    tls_upstream: TlsUpstream,
    through: Callable[..., Proxy],
    pki: Pki,
    tmp_path: Path,
    client: str,
) -> None:
    """TLS to the proxy, and the origin's TLS inside it (TLS in TLS)."""
    server_tls = _server_tls(pki, tmp_path, "proxy")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_tls["ssl_certfile"], server_tls["ssl_keyfile"])
    with running(ConnectProxy(credentials=CREDENTIALS, tls=context)) as egress_proxy:
        proxy = through(upstream_client=client, https_proxy=egress_proxy.url(USERINFO))
        with _claude(proxy) as claude:
            assert claude.messages.create(**BODY).usage.output_tokens == 7
        assert egress_proxy.connects == [tls_upstream.authority]
        assert egress_proxy.authorizations == [CREDENTIALS]


@pytest.mark.parametrize("client", CLIENTS)
def test_plain_http_upstream_goes_through_the_proxy_in_absolute_form(
    make_proxy: Callable[..., Proxy],
    upstream: tuple[FakeAnthropic, ServerThread],
    client: str,
) -> None:
    """An http:// upstream (an in-house gateway, say): absolute-form requests to the proxy,
    which is what every proxy accepts; the credentials ride on each request, to the proxy."""
    fake, server = upstream
    with running(ConnectProxy(credentials=CREDENTIALS)) as egress_proxy:
        proxy = make_proxy(upstream_client=client, http_proxy=egress_proxy.url(USERINFO))
        r = httpx.post(f"{proxy.url}/v1/messages?beta=true", json=BODY)
        assert r.status_code == 200
        assert egress_proxy.connects == []
        assert egress_proxy.forwarded == [
            f"POST http://127.0.0.1:{server.port}/v1/messages?beta=true HTTP/1.1".encode()
        ]
        assert egress_proxy.authorizations == [CREDENTIALS]
        peer = fake.requests[0].client
        assert peer is not None
        assert peer[1] in egress_proxy.outbound_ports
        assert fake.requests[0].header("proxy-authorization") is None

        wrong = make_proxy(upstream_client=client, http_proxy=egress_proxy.url("alice:wrong"))
        r = httpx.post(f"{wrong.url}/v1/messages", json=BODY)
    assert r.status_code == 502
    assert r.json()["error"]["message"].endswith(
        f"egress proxy {egress_proxy.url()} refused http://127.0.0.1:{server.port}: "
        "407 Proxy Authentication Required"
    )
    assert len(fake.requests) == 1
