"""The three upstream clients (http11, the default; aiohttp; httpx) keep one contract."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import anthropic
import httpx
import pytest
from anthropic.types.message_create_params import MessageCreateParamsBase

from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic, error_payload
from tests.servers import ServerThread

CLIENTS = ["http11", "aiohttp", "httpx"]
# A request as the SDK types it: `claude.messages.create(**BODY)` is checked key by key.
BODY: MessageCreateParamsBase = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize("client", CLIENTS)
def test_stream_and_headers_pass_through(
    make_proxy: Callable[..., Proxy], upstream: tuple[FakeAnthropic, ServerThread], client: str
) -> None:
    fake, _ = upstream
    proxy = make_proxy(upstream_client=client)
    headers = {"x-api-key": "k", "anthropic-beta": "a,b,c", "x-tokenmeter-task": f"t-{client}"}
    r = httpx.post(f"{proxy.url}/v1/messages", json={**BODY, "stream": True}, headers=headers)
    assert r.text.count("event: ") == 10  # start, ping, block start + 4 deltas + stop, delta, stop
    assert r.text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')
    sent = fake.requests[-1]
    assert sent.header("anthropic-beta") == "a,b,c"
    assert sent.header("accept-encoding") == "gzip, deflate, br, zstd"  # httpx's own, untouched
    assert sent.header("content-type") == "application/json"
    assert proxy.task(f"t-{client}", 1)["tokens"]["cache_read"] == 300


@pytest.mark.parametrize("client", CLIENTS)
def test_response_headers_are_upstream_s_exactly_once(
    make_proxy: Callable[..., Proxy], upstream: tuple[FakeAnthropic, ServerThread], client: str
) -> None:
    proxy = make_proxy(upstream_client=client)
    direct = httpx.post(f"{upstream[1].url}/v1/messages", json=BODY)
    proxied = httpx.post(f"{proxy.url}/v1/messages", json=BODY)
    names = [name.lower() for name, _ in proxied.headers.raw]
    assert names == [name.lower() for name, _ in direct.headers.raw]
    assert names.count(b"date") == names.count(b"server") == 1  # upstream's, not the proxy's too
    assert proxied.headers["server"] == direct.headers["server"] == "uvicorn"


@pytest.mark.parametrize("client", CLIENTS)
def test_no_header_of_the_client_library_is_added(
    make_proxy: Callable[..., Proxy], upstream: tuple[FakeAnthropic, ServerThread], client: str
) -> None:
    fake, _ = upstream
    proxy = make_proxy(upstream_client=client)
    with httpx.Client() as raw:
        request = raw.build_request("POST", f"{proxy.url}/v1/messages", content=b"{}")
        for name in ("accept", "accept-encoding", "user-agent", "content-type"):
            request.headers.pop(name, None)
        raw.send(request)
    sent = {name.decode().lower() for name, _ in fake.requests[-1].headers}
    assert sent.isdisjoint({"accept", "accept-encoding", "user-agent", "content-type"})


@pytest.mark.parametrize("client", CLIENTS)
def test_errors_unreachable_and_timeout(
    make_proxy: Callable[..., Proxy], client: str, dead_url: str
) -> None:
    proxy = make_proxy(upstream_client=client, read_timeout_s=0.5)
    r = httpx.post(f"{proxy.url}/v1/messages", json=BODY, headers={"x-fake-scenario": "error_529"})
    assert (r.status_code, r.content) == (529, error_payload(529))
    r = httpx.post(f"{proxy.url}/v1/messages", json=BODY, headers={"x-fake-scenario": "stall"})
    assert r.status_code == 504
    dead = make_proxy(upstream_client=client, anthropic_upstream=dead_url)
    r = httpx.post(f"{dead.url}/v1/messages", json=BODY)
    assert r.status_code == 502
    assert r.json()["error"]["message"].startswith("tokenmeter: upstream http://127.0.0.1:")


@pytest.mark.parametrize("client", CLIENTS)
def test_cut_stream_is_incomplete(make_proxy: Callable[..., Proxy], client: str) -> None:
    proxy = make_proxy(upstream_client=client)
    headers = {"x-fake-scenario": "cut", "x-tokenmeter-task": "t-cut"}
    with contextlib.suppress(httpx.HTTPError):  # the client may see the cut as a broken connection
        httpx.post(f"{proxy.url}/v1/messages", json={**BODY, "stream": True}, headers=headers)
    task = proxy.task("t-cut", 1)
    assert task["tokens"]["input"] == 11
    labels = {"provider": "anthropic", "model": "claude-opus-4-8", "code": "200"}
    assert proxy.metric("tokenmeter_requests_total", status="incomplete", **labels) == 1


def test_overload_is_a_fast_503_in_the_provider_format(
    make_proxy: Callable[..., Proxy], upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    fake.pause_s = 0.5
    proxy = make_proxy(max_in_flight=1)
    slow = threading.Thread(
        target=httpx.post,
        args=(f"{proxy.url}/v1/messages",),
        kwargs={"json": {**BODY, "stream": True}, "headers": {"x-fake-scenario": "slow"}},
    )
    slow.start()
    deadline = time.monotonic() + 5
    while proxy.app.parts.forwarder.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0) as claude:
        t0 = time.monotonic()
        with pytest.raises(anthropic.APIStatusError) as caught:
            claude.messages.create(**BODY)
        elapsed = time.monotonic() - t0
    slow.join()
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["type"] == "overloaded_error"
    assert elapsed < 2.0  # answered at once, not queued behind the 4.5 s slow stream
    assert (
        proxy.metric(
            "tokenmeter_requests_total",
            provider="anthropic",
            model="unknown",
            status="rejected",
            code="503",
        )
        == 1
    )
