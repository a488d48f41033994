"""Limits on what a client sends (issue 12, finding 5): body and head size, slow and idle clients.

Every test drives the real proxy (uvicorn with ``proxy.serving``'s protocol, as ``tokenmeter
serve`` runs it) over raw sockets where a well-behaved client could not misbehave enough, and
checks what the client got, what the fake upstream got (nothing, for a refusal) and the counters.
Limits are set small per test so the timeouts take a second, not a minute.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.wire import body_of, raw_request, status_of
from tests.servers import ServerThread

MB = 1024 * 1024
HEAD = (
    b"POST /v1/messages HTTP/1.1\r\nhost: tokenmeter\r\nx-api-key: sk-ant-test\r\n"
    b"content-type: application/json\r\n"
)

Fake = tuple[FakeAnthropic, ServerThread]


def message_of_size(size: int) -> bytes:
    """A valid Messages request of exactly ``size`` bytes."""
    base = {"model": "claude-opus-4-8", "max_tokens": 8, "messages": [{"role": "user"}]}
    empty = json.dumps({**base, "messages": [{"role": "user", "content": ""}]}).encode()
    content = "x" * (size - len(empty))
    return json.dumps({**base, "messages": [{"role": "user", "content": content}]}).encode()


def connect(proxy: Proxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything until the server closes (or resets) the connection."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def read_one_answer(sock: socket.socket) -> bytes:
    """One whole answer with a content-length body: its head and body may come in several
    segments (the proxy writes its event ahead between the head and the last body bytes)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert found is not None, head
    length = int(found.group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def anthropic_error(answer: bytes) -> dict[str, str]:
    payload = json.loads(body_of(answer))
    assert payload["type"] == "error"
    error: dict[str, str] = payload["error"]
    return error


# -- body size -----------------------------------------------------------------------------------


@pytest.fixture
def small(make_proxy: Callable[..., Proxy]) -> Proxy:
    return make_proxy(max_body_mb=1)


def test_a_body_over_the_cap_is_refused_with_413(small: Proxy, upstream: Fake) -> None:
    response = httpx.post(
        f"{small.url}/v1/messages",
        content=message_of_size(MB + 1),
        headers={"x-api-key": "sk-ant-test", "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert "TOKENMETER_MAX_BODY_MB" in response.json()["error"]["message"]
    assert upstream[0].requests == []
    assert small.metric("tokenmeter_requests_refused_total", reason="body_too_large") == 1


def test_a_body_at_the_cap_is_forwarded_whole(small: Proxy, upstream: Fake) -> None:
    body = message_of_size(MB)
    response = httpx.post(
        f"{small.url}/v1/messages",
        content=body,
        headers={"x-api-key": "sk-ant-test", "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert [r.body for r in upstream[0].requests] == [body]


def test_a_declared_length_over_the_cap_is_refused_before_any_body(
    small: Proxy, upstream: Fake
) -> None:
    with connect(small) as sock:
        sock.sendall(HEAD + b"content-length: 1000000000\r\n\r\n")  # and never a body byte
        sock.settimeout(5)
        answer = sock.recv(65536)
    assert status_of(answer) == 413
    assert anthropic_error(answer)["type"] == "request_too_large"
    assert upstream[0].requests == []


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap(
    small: Proxy, upstream: Fake
) -> None:
    chunk = b"x" * 65536
    with connect(small) as sock:
        sock.sendall(HEAD + b"transfer-encoding: chunked\r\n\r\n")
        for _ in range(24):  # 1.5 MB, then the client waits: the answer must not need the rest
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.settimeout(5)
        answer = sock.recv(65536)
    assert status_of(answer) == 413
    assert upstream[0].requests == []


def test_after_a_413_the_connection_drains_the_body_and_serves_the_next_request(
    make_proxy: Callable[..., Proxy], upstream: Fake
) -> None:
    proxy = make_proxy(max_body_mb=1, client_keepalive_timeout_s=1)
    with connect(proxy) as sock:
        sock.sendall(HEAD + b"content-length: %d\r\n\r\n" % (2 * MB))
        assert status_of(sock.recv(65536)) == 413  # before the body is sent
        sock.sendall(b"x" * 2 * MB)  # a client that sends it anyway (most SDKs do) gets no reset
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: t\r\nx-api-key: k\r\n\r\n")
        assert status_of(read_one_answer(sock)) == 200
        started = time.monotonic()
        assert read_answer(sock) == b""  # then idle: closed after the keep-alive timeout
    assert time.monotonic() - started < 5
    assert [(r.method, r.path) for r in upstream[0].requests] == [("GET", "/v1/models")]


def test_a_client_waiting_for_100_continue_gets_the_413_and_a_closed_connection(
    small: Proxy, upstream: Fake
) -> None:
    with connect(small) as sock:
        sock.sendall(HEAD + b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % (2 * MB))
        sock.settimeout(5)
        answer = read_answer(sock)  # the server closes: the body it never got is not awaited
    assert answer.startswith(b"HTTP/1.1 413 ")  # no 100 Continue first
    assert b"\r\nconnection: close\r\n" in answer
    assert upstream[0].requests == []


def test_an_openai_body_over_the_cap_is_refused_in_openai_format(
    make_proxy: Callable[..., Proxy], openai_upstream: tuple[object, ServerThread]
) -> None:
    proxy = make_proxy(max_body_mb=1, openai_upstream=openai_upstream[1].url)
    response = httpx.post(f"{proxy.url}/openai/v1/chat/completions", content=b"x" * (MB + 1))
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "request_too_large",
        None,
    )


def test_a_body_the_client_abandoned_is_never_forwarded(proxy: Proxy, upstream: Fake) -> None:
    with connect(proxy) as sock:
        sock.sendall(HEAD + b"content-length: 1000\r\n\r\n" + b'{"model":"claude-opus-4-8",')
        time.sleep(0.2)  # the forwarder is reading the body when the client goes
    refused = ("tokenmeter_requests_refused_total", {"reason": "incomplete_body"})
    wait_for(lambda: bool(upstream[0].requests) or proxy.metric(refused[0], **refused[1]) == 1)
    time.sleep(0.2)
    assert upstream[0].requests == []  # before the fix: the 27 bytes went upstream


# -- head size -----------------------------------------------------------------------------------


def test_a_header_over_the_cap_is_refused_with_431(proxy: Proxy, upstream: Fake) -> None:
    big = b"x-padding: " + b"a" * (100 * 1024) + b"\r\n"
    answer = raw_request(proxy.server.port, HEAD + big + b"content-length: 2\r\n\r\n{}")
    assert status_of(answer) == 431
    assert anthropic_error(answer)["type"] == "request_too_large"
    assert upstream[0].requests == []
    assert proxy.metric("tokenmeter_requests_refused_total", reason="headers_too_large") == 1


def test_a_10_mb_header_is_neither_buffered_nor_forwarded(proxy: Proxy, upstream: Fake) -> None:
    with connect(proxy) as sock:
        sock.sendall(HEAD + b"x-padding: ")
        sent = 0
        try:
            while sent < 10 * MB:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:  # the proxy refused and closed long before the end
            pass
        answer = read_answer(sock)
    assert sent < 10 * MB
    assert answer == b"" or status_of(answer) == 431
    assert upstream[0].requests == []
    wait_for(lambda: proxy.metric("tokenmeter_requests_refused_total", reason="headers_too_large"))


def test_a_large_head_under_the_cap_is_forwarded(proxy: Proxy, upstream: Fake) -> None:
    padding = b"x-padding: " + b"a" * (60 * 1024) + b"\r\n"
    body = message_of_size(100)
    answer = raw_request(proxy.server.port, HEAD + padding + b"content-length: 100\r\n\r\n" + body)
    assert status_of(answer) == 200
    assert len(upstream[0].requests) == 1


# -- slow and idle clients -----------------------------------------------------------------------


@pytest.fixture
def strict(make_proxy: Callable[..., Proxy]) -> Proxy:
    return make_proxy(
        client_header_timeout_s=1,
        client_body_timeout_s=1,
        client_keepalive_timeout_s=1,
    )


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_idle_sockets_and_half_sent_heads_are_closed(
    strict: Proxy, upstream: Fake, sockets: list[socket.socket]
) -> None:
    for index in range(1000):
        sock = connect(strict)
        sockets.append(sock)
        if index % 2:
            sock.sendall(HEAD + b"x-slow: ")  # a slowloris head, never finished
    time.sleep(1.5)
    answers = []
    deadline = time.monotonic() + 5  # for all of them: an open socket must not stall the test
    for sock in sockets:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        answers.append(read_answer(sock))
    idle, half = answers[::2], answers[1::2]
    assert idle == [b""] * 500  # closed without a word: nothing was asked
    assert {status_of(a) for a in half} == {408}
    assert anthropic_error(half[0])["type"] == "timeout_error"
    assert strict.metric("tokenmeter_client_timeouts_total", phase="head") == 1000
    assert upstream[0].requests == []


def test_a_body_sent_too_slowly_is_cut_with_408(strict: Proxy, upstream: Fake) -> None:
    with connect(strict) as sock:
        sock.sendall(HEAD + b"content-length: 100\r\n\r\n" + b'{"model":')
        started = time.monotonic()
        answer = read_answer(sock)
    assert 0.9 < time.monotonic() - started < 5
    assert status_of(answer) == 408
    assert "not complete within 1 s" in anthropic_error(answer)["message"]
    wait_for(lambda: strict.metric("tokenmeter_requests_refused_total", reason="incomplete_body"))
    assert strict.metric("tokenmeter_client_timeouts_total", phase="body") == 1
    assert upstream[0].requests == []


def test_a_body_that_keeps_trickling_is_cut_all_the_same(strict: Proxy, upstream: Fake) -> None:
    with connect(strict) as sock:
        sock.sendall(HEAD + b"content-length: 100\r\n\r\n")
        started = time.monotonic()
        try:
            for _ in range(40):  # one byte every 0.1 s: never idle, never done
                sock.sendall(b" ")
                time.sleep(0.1)
        except OSError:
            pass
        answer = read_answer(sock)
    assert time.monotonic() - started < 3
    assert status_of(answer) == 408
    assert upstream[0].requests == []


def test_a_slow_body_within_the_timeout_is_forwarded(strict: Proxy, upstream: Fake) -> None:
    body = message_of_size(200)
    with connect(strict) as sock:
        sock.sendall(HEAD + b"content-length: 200\r\nconnection: close\r\n\r\n")
        for start in range(0, 200, 50):
            time.sleep(0.1)
            sock.sendall(body[start : start + 50])
        answer = read_answer(sock)
    assert status_of(answer) == 200
    assert [r.body for r in upstream[0].requests] == [body]


def test_an_idle_keep_alive_connection_is_closed(strict: Proxy) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: tokenmeter\r\n\r\n")
        first = sock.recv(65536)
        assert status_of(first) == 200
        started = time.monotonic()
        assert read_answer(sock) == b""
    assert 0.9 < time.monotonic() - started < 5
    assert strict.metric("tokenmeter_client_timeouts_total", phase="keepalive") == 1


def test_deadlines_run_from_each_request_not_from_the_connection(strict: Proxy) -> None:
    request = b"GET /healthz HTTP/1.1\r\nhost: tokenmeter\r\n\r\n"
    with connect(strict) as sock:
        sock.sendall(request)
        assert status_of(sock.recv(65536)) == 200
        time.sleep(0.7)  # idle, under the keep-alive timeout
        sock.sendall(request[:20])  # a second head starts 0.7 s in...
        time.sleep(0.6)  # ... and ends 1.3 s after the connection opened, 0.6 s after it began
        sock.sendall(request[20:])
        assert status_of(sock.recv(65536)) == 200
        # two requests in one write (pipelining) are both answered, in order
        sock.sendall(request + request)
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 2:
            answers += sock.recv(65536)
    assert strict.metric("tokenmeter_client_timeouts_total", phase="head") == 0


def test_a_late_pipelined_head_never_breaks_the_answer_streaming_before_it(
    strict: Proxy, upstream: Fake
) -> None:
    body = json.dumps(
        {"model": "claude-opus-4-8", "max_tokens": 8, "stream": True, "messages": []}
    ).encode()
    stream = HEAD + b"x-fake-scenario: slow\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    with connect(strict) as sock:
        sock.sendall(stream + b"GET /v1/models HTTP/1.1\r\nhost: t")  # ...and never the rest
        answer = read_answer(sock)  # the stream takes ~3 s, the head timeout is 1 s
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"event: message_stop" in answer[-200:]
    assert answer.endswith(b"0\r\n\r\n")  # the stream ended cleanly, then the connection
    assert b"HTTP/1.1 408" not in answer
    assert strict.metric("tokenmeter_client_timeouts_total", phase="head") == 1


def test_a_refused_body_that_keeps_coming_slowly_is_cut(
    make_proxy: Callable[..., Proxy], upstream: Fake
) -> None:
    proxy = make_proxy(max_body_mb=1, client_body_timeout_s=1)
    with connect(proxy) as sock:
        sock.sendall(HEAD + b"content-length: %d\r\n\r\n" % (2 * MB))
        assert status_of(sock.recv(65536)) == 413
        started = time.monotonic()
        try:
            while time.monotonic() - started < 5:
                sock.sendall(b"x" * 1024)
                time.sleep(0.05)
        except OSError:  # closed by the body timeout
            pass
        assert time.monotonic() - started < 3
    assert proxy.metric("tokenmeter_client_timeouts_total", phase="body") == 1
    assert upstream[0].requests == []


def test_a_slow_body_to_the_api_is_cut_too(strict: Proxy) -> None:
    with connect(strict) as sock:
        head = b"POST /api/v1/people/import HTTP/1.1\r\nhost: t\r\ncontent-length: 50\r\n\r\n"
        sock.sendall(head + b"user,")
        answer = read_answer(sock)
    assert status_of(answer) == 408
    assert "not complete within 1 s" in json.loads(body_of(answer))["detail"]
