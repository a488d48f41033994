"""Request smuggling through the path (issue 12, finding 1), byte for byte on the wire.

Each trick is written raw on a socket (what ``curl --path-as-is`` sends) to the real proxy, whose
upstream is a ``WireTap`` in front of the fake Anthropic (or OpenAI) API: the tap keeps every byte
the proxy wrote upstream. Before the fix the proxy built the upstream request line from the
decoded path: ``%0D%0A`` became a line break (a smuggled header, or a whole smuggled completion
the upstream ran and billed while tokenmeter recorded nothing), ``%2E%2E`` escaped the upstream
base path, ``%3F`` became a query, and ``%E4%B8%AD`` answered 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.wire import WireTap, body_of, raw_request, status_of
from tests.servers import ServerThread

MESSAGE = json.dumps(
    {"model": "claude-opus-4-8", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def request(method: str, target: bytes, body: bytes = b"", **headers: str) -> bytes:
    head = [b"%s %s HTTP/1.1" % (method.encode(), target), b"host: tokenmeter"]
    head += [b"x-api-key: sk-ant-test", b"content-type: application/json"]
    head += [f"{k.replace('_', '-')}: {v}".encode() for k, v in headers.items()]
    head.append(b"content-length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.fixture
def tapped(
    make_proxy: Callable[..., Proxy],
    upstream: tuple[FakeAnthropic, ServerThread],
    openai_upstream: tuple[FakeOpenAI, ServerThread],
) -> Iterator[tuple[Proxy, WireTap, WireTap]]:
    """The proxy with each upstream behind a wire tap: (proxy, anthropic tap, openai tap)."""
    with WireTap(upstream[1].port) as tap, WireTap(openai_upstream[1].port) as openai_tap:
        proxy = make_proxy(anthropic_upstream=tap.url, openai_upstream=openai_tap.url)
        yield proxy, tap, openai_tap


REFUSED: list[tuple[str, bytes, bytes]] = [
    # (what it tries, request target, body)
    ("a header injected upstream", b"/v1/models%0D%0AX-Injected:%20yes%0D%0A", b""),
    (
        "a second request, as in the issue",
        b"/v1/messages%0D%0A%0D%0APOST%20/v1/messages",
        MESSAGE,
    ),
    (
        "a complete smuggled completion the upstream runs",
        b"/v1/models%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0APOST%20/v1/messages",
        MESSAGE,
    ),
    ("a bare LF", b"/v1/models%0AX-Injected:%20yes", b""),
    ("NUL", b"/v1/models%00", b""),
    ("a '..' past the base path", b"/v1/%2E%2E/%2E%2E/admin", b""),
    ("a dot segment, unencoded", b"/v1/../v1/messages", MESSAGE),
    ("'?' that would become a query", b"/v1/models%3Fbeta=true", b""),
    ("'/' inside a segment", b"/v1/models/a%2Fb", b""),
    ("the metered path in disguise", b"/v1/%6Dessages", MESSAGE),
    ("non-UTF-8, encoded", b"/v1/models/%FF%FE", b""),
    ("non-UTF-8, raw bytes", b"/v1/models/\xff\xfe", b""),
    ("a raw NUL", b"/v1/models\x00", b""),
    ("an empty segment", b"/v1//messages", MESSAGE),
    ("a control character in the /u/ prefix", b"/u/al%0D%0Aice/v1/messages", MESSAGE),
]


@pytest.mark.parametrize(("trick", "target", "body"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_smuggling_path_is_refused_and_nothing_reaches_upstream(
    tapped: tuple[Proxy, WireTap, WireTap],
    upstream: tuple[FakeAnthropic, ServerThread],
    trick: str,
    target: bytes,
    body: bytes,
) -> None:
    proxy, tap, _ = tapped
    method = "POST" if body else "GET"
    answer = raw_request(proxy.server.port, request(method, target, body))
    assert status_of(answer) == 400, answer
    error = json.loads(body_of(answer))
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "nothing was forwarded" in error["error"]["message"]
    # a request after it on a new connection goes through: the tap is in the path
    ok = raw_request(proxy.server.port, request("GET", b"/v1/models"))
    assert status_of(ok) == 200
    assert tap.request_lines() == [b"GET /v1/models HTTP/1.1"]
    assert [(r.method, r.path) for r in upstream[0].requests] == [("GET", "/v1/models")]


def test_an_openai_path_is_refused_in_openai_error_format(
    tapped: tuple[Proxy, WireTap, WireTap],
) -> None:
    proxy, _, openai_tap = tapped
    target = b"/openai/v1/chat/completions%0D%0AX-Injected:%20yes"
    answer = raw_request(proxy.server.port, request("POST", target, b"{}"))
    assert status_of(answer) == 400
    error = json.loads(body_of(answer))["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)
    assert "'%0D' encodes a control character" in error["message"]
    assert openai_tap.received() == b""


FORWARDED: list[tuple[bytes, bytes]] = [
    # (target the client sent, request line the upstream must get)
    (b"/v1/models/%E4%B8%AD", b"GET /v1/models/%E4%B8%AD HTTP/1.1"),
    (b"/v1/models?beta=true&x=%0D%0A", b"GET /v1/models?beta=true&x=%0D%0A HTTP/1.1"),
    (b"/v1/models/ft%3Agpt:x", b"GET /v1/models/ft%3Agpt:x HTTP/1.1"),
    (b"/u/al%2Fice/t/T-1/v1/models?a=%3F", b"GET /v1/models?a=%3F HTTP/1.1"),
]


@pytest.mark.parametrize(("target", "line"), FORWARDED)
def test_a_valid_path_goes_upstream_exactly_as_sent(
    tapped: tuple[Proxy, WireTap, WireTap], target: bytes, line: bytes
) -> None:
    proxy, tap, _ = tapped
    answer = raw_request(proxy.server.port, request("GET", target))
    assert status_of(answer) in (200, 404)  # the upstream's answer, never the proxy's 500
    sent = tap.received()
    assert sent.startswith(line + b"\r\nhost: 127.0.0.1:")
    assert b"x-injected" not in sent.lower()


def test_the_whole_upstream_request_byte_for_byte(tapped: tuple[Proxy, WireTap, WireTap]) -> None:
    proxy, tap, _ = tapped
    target = b"/u/al%2Fice%20%E4%B8%AD/t/feat%2Flogin/v1/messages?beta=true"
    answer = raw_request(proxy.server.port, request("POST", target, MESSAGE))
    assert status_of(answer) == 200
    assert (
        tap.received()
        == (
            b"POST /v1/messages?beta=true HTTP/1.1\r\n"
            b"host: 127.0.0.1:%d\r\n"
            b"x-api-key: sk-ant-test\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (tap.port, len(MESSAGE))
        )
        + MESSAGE
    )
    task: dict[str, Any] = proxy.task("feat/login", 1)
    assert task["requests"] == 1
    users = proxy.http.get("/api/v1/usage", params={"group_by": "user"}).json()
    assert [row["user"] for row in users["rows"]] == ["al/ice 中"]


def test_dot_segments_cannot_escape_the_upstream_base_path(
    make_proxy: Callable[..., Proxy], upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    with WireTap(upstream[1].port) as tap:
        proxy = make_proxy(anthropic_upstream=f"{tap.url}/base")
        for target in (b"/v1/%2E%2E/%2E%2E/admin", b"/v1/../../admin", b"/v1/%2e%2E/x"):
            assert status_of(raw_request(proxy.server.port, request("GET", target))) == 400
        assert tap.received() == b""
        raw_request(proxy.server.port, request("GET", b"/v1/models"))
        assert tap.request_lines() == [b"GET /base/v1/models HTTP/1.1"]
