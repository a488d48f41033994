"""The forwarder in-process: the ASGI app called directly, upstream answered by
proxy.upstream.mock, each finished exchange caught as the ``UsageEvent`` the meter would get.

No socket, no server, no database: each test runs in milliseconds, and sees exactly what went
upstream, what the client got (message by message) and what was metered. What needs real sockets
stays end to end (tests/integration/test_proxy_*.py: the SDKs through a real server; the
clients' own wire behaviour in test_http11.py and test_upstream_clients.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy.attribution import Identifier
from proxy.forward import Forwarder, Message
from proxy.providers import anthropic, openai
from proxy.upstream import UpstreamBroken, UpstreamTimeout, UpstreamUnreachable
from proxy.upstream.mock import MockRequest, MockResponse, MockUpstream, asgi
from proxy.usage import Status, UsageEvent
from tests.fakes.anthropic_upstream import DEFAULT_USAGE, FakeAnthropic

ANTHROPIC = "https://api.anthropic.test"
OPENAI = "https://api.openai.test"
REQUEST = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}
USAGE = {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 7}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-8",
    "content": [{"type": "text", "text": "hello"}],
    "stop_reason": "end_turn",
    "usage": USAGE,
}


@dataclass
class Answer:
    """What the client got: the response head, each body message, and how it ended."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    finished: bool = False  # the last body message said more_body=False: a clean end
    metered_before_end: int | None = None  # events metered when the last message went out

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


@dataclass
class Rig:
    """A forwarder on a mock upstream; ``events`` is what it metered."""

    upstream: MockUpstream
    forwarder: Forwarder
    events: list[UsageEvent]

    async def call(
        self,
        path: str = "/v1/messages",
        body: bytes = json.dumps(REQUEST).encode(),
        headers: list[tuple[bytes, bytes]] | None = None,
        hang_up: asyncio.Event | None = None,
    ) -> Answer:
        """One request through the forwarder; the client hangs up when ``hang_up`` is set."""
        answer = Answer()
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "method": "POST",
            "path": raw_path,
            "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "headers": headers or [(b"content-type", b"application/json")],
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await (hang_up or asyncio.Event()).wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status, answer.headers = message["status"], message["headers"]
                return
            answer.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answer.finished = True
                answer.metered_before_end = len(self.events)

        await self.forwarder(scope, receive, send)
        return answer


def rig(handler: Callable[[MockRequest], Any], **options: Any) -> Rig:
    events: list[UsageEvent] = []

    def sink(event: UsageEvent) -> None:
        events.append(event)

    upstream = MockUpstream(handler)
    providers = [anthropic.provider(ANTHROPIC), openai.provider(OPENAI)]
    forwarder = Forwarder(upstream, providers, Identifier("salt"), sink, **options)
    return Rig(upstream, forwarder, events)


def json_answer(payload: dict[str, Any], status: int = 200) -> Callable[[MockRequest], Any]:
    body = json.dumps(payload).encode()
    headers = [
        (b"Content-Type", b"application/json"),
        (b"Content-Length", b"%d" % len(body)),
        (b"request-id", b"req_1"),
        (b"Connection", b"keep-alive"),
    ]
    return lambda request: MockResponse(status, headers, body)


async def test_request_goes_upstream_as_received_minus_hop_by_hop_and_own_headers() -> None:
    forwarding = rig(json_answer(MESSAGE))
    headers = [
        (b"host", b"proxy.local"),
        (b"x-api-key", b"sk-ant-1"),
        (b"anthropic-beta", b"a,b"),
        (b"connection", b"keep-alive"),
        (b"x-tokenmeter-note", b"stripped"),
        (b"content-type", b"application/json"),
    ]
    body = b'{"model":"claude-opus-4-8",  "max_tokens":9}'
    await forwarding.call("/u/alice/t/t-1/v1/messages?beta=true", body, headers)
    (sent,) = forwarding.upstream.requests
    assert (sent.method, sent.body) == ("POST", body)
    assert sent.url == f"{ANTHROPIC}/v1/messages?beta=true"  # the path prefix named, then gone
    assert sent.headers == [
        (b"x-api-key", b"sk-ant-1"),
        (b"anthropic-beta", b"a,b"),
        (b"content-type", b"application/json"),
    ]
    (event,) = forwarding.events
    assert (event.attribution.user, event.attribution.task) == ("alice", "t-1")
    assert event.attribution.source == "path"


async def test_json_answer_is_relayed_as_sent_and_metered() -> None:
    forwarding = rig(json_answer(MESSAGE))
    answer = await forwarding.call()
    assert (answer.status, json.loads(answer.body)) == (200, MESSAGE)
    assert answer.header(b"content-length") == b"%d" % len(answer.body)
    assert answer.header(b"connection") is None  # hop-by-hop: upstream's connection, not ours
    assert answer.metered_before_end == 1  # in the recorder before the client has the last byte
    (event,) = forwarding.events
    assert (event.status, event.http_status, event.request_id) == (Status.OK, 200, "req_1")
    assert (event.usage.input, event.usage.cache_read, event.usage.output) == (3, 7, 5)
    assert forwarding.upstream.responses[0].closed


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_a_stream_split_anywhere_reaches_the_client_whole_and_metered_once(
    size: int,
) -> None:
    whole = (await rig(asgi(FakeAnthropic())).call(body=_streamed())).body
    pieces = [whole[i : i + size] for i in range(0, len(whole), size)]
    sse = [(b"content-type", b"text/event-stream")]
    forwarding = rig(lambda request: MockResponse(200, sse, pieces))
    answer = await forwarding.call(body=_streamed())
    assert answer.body == whole
    assert answer.finished
    (event,) = forwarding.events
    assert (event.status, event.stream, event.facts.complete) == (Status.OK, True, True)
    assert event.usage.cache_read == DEFAULT_USAGE["cache_read_input_tokens"]
    assert event.usage.output == DEFAULT_USAGE["output_tokens"]


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (UpstreamUnreachable("connection refused"), 502, "api_error"),
        (UpstreamTimeout("no answer in 0.5 s"), 504, "timeout_error"),
    ],
)
@pytest.mark.parametrize("prefix", ["", "/openai"])
async def test_no_answer_is_the_gateway_error_in_the_provider_s_format(
    error: Exception, status: int, kind: str, prefix: str
) -> None:
    def fail(request: MockRequest) -> MockResponse:
        raise error

    forwarding = rig(fail)
    answer = await forwarding.call(f"{prefix}/v1/messages")
    assert answer.status == status
    assert answer.finished
    body = json.loads(answer.body)
    if prefix:  # OpenAI: {"error": {"message", "type", "param", "code"}}
        assert body["error"]["param"] is None
        assert str(error) in body["error"]["message"]
    else:  # Anthropic: {"type": "error", "error": {"type", "message"}}
        assert (body["type"], body["error"]["type"]) == ("error", kind)
        assert str(error) in body["error"]["message"]
    (event,) = forwarding.events
    assert (event.status, event.http_status) == (Status.UPSTREAM_UNREACHABLE, status)


async def test_a_body_broken_off_ends_the_client_s_body_uncleanly_and_is_incomplete() -> None:
    whole = (await rig(asgi(FakeAnthropic())).call(body=_streamed())).body
    start = whole[: whole.index(b"event: content_block_delta")]
    sse = [(b"content-type", b"text/event-stream")]
    forwarding = rig(lambda r: MockResponse(200, sse, [start, UpstreamBroken("reset")]))
    answer = await forwarding.call(body=_streamed())
    assert answer.body == start
    assert not answer.finished  # the server then closes the connection: a visible cut
    (event,) = forwarding.events
    assert event.status is Status.INCOMPLETE
    assert event.usage.cache_read == DEFAULT_USAGE["cache_read_input_tokens"]  # message_start's
    assert forwarding.upstream.responses[0].closed


async def test_the_fake_s_cut_stream_is_incomplete_in_process_too() -> None:
    forwarding = rig(asgi(FakeAnthropic()))
    answer = await forwarding.call(body=_streamed(), headers=[(b"x-fake-scenario", b"cut")])
    assert not answer.finished
    assert forwarding.events[0].status is Status.INCOMPLETE


async def test_a_client_hanging_up_mid_stream_is_recorded_with_what_it_used() -> None:
    hang_up, upstream_waits = asyncio.Event(), asyncio.Event()
    whole = (await rig(asgi(FakeAnthropic())).call(body=_streamed())).body
    start = whole[: whole.index(b"event: content_block_delta")]

    async def silent_after_start() -> AsyncIterator[bytes]:
        yield start
        hang_up.set()  # the client gives up while upstream says nothing more
        await upstream_waits.wait()
        yield b"never relayed"

    sse = [(b"content-type", b"text/event-stream")]
    forwarding = rig(lambda request: MockResponse(200, sse, silent_after_start()))
    answer = await forwarding.call(body=_streamed(), hang_up=hang_up)
    assert answer.body == start
    assert not answer.finished
    (event,) = forwarding.events
    assert event.status is Status.CLIENT_DISCONNECTED
    assert event.usage.cache_read == DEFAULT_USAGE["cache_read_input_tokens"]
    assert forwarding.upstream.responses[0].closed


async def test_past_max_in_flight_a_request_gets_503_and_never_goes_upstream() -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: MockRequest) -> MockResponse:
        arrived.set()
        await release.wait()
        answer: MockResponse = json_answer(MESSAGE)(request)
        return answer

    forwarding = rig(slow, max_in_flight=1)
    first = asyncio.create_task(forwarding.call())
    await arrived.wait()
    shed = await forwarding.call()
    release.set()
    assert (await first).status == 200
    assert shed.status == 503
    assert json.loads(shed.body)["error"]["type"] == "overloaded_error"
    assert len(forwarding.upstream.requests) == 1
    assert [event.status for event in forwarding.events] == [Status.REJECTED, Status.OK]


async def test_a_refused_path_is_answered_here_and_nothing_goes_upstream() -> None:
    forwarding = rig(json_answer(MESSAGE))
    answer = await forwarding.call("/v1/messages%0D%0AX-Injected:%201")
    assert answer.status == 400
    assert json.loads(answer.body)["type"] == "error"
    assert forwarding.upstream.requests == []
    assert forwarding.events == []


def _streamed() -> bytes:
    return json.dumps({**REQUEST, "stream": True}).encode()
