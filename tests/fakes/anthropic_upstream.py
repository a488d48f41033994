"""A fake Anthropic API speaking the real wire format, served on a loopback port by uvicorn.

Its messages, SSE events and error bodies are built by ``anthropic_format``, the wire format
module the bench's mock upstream shares.

Faithful to what the proxy must survive: named SSE events (``event: x`` / ``data: {...}``) with
pings between them, ``request-id`` headers, Anthropic's error JSON, gzip when the client accepts
it, pauses between events, a mid-stream ``error`` event and a connection cut mid-stream.

A test picks the behaviour per request with headers the proxy forwards untouched:
``x-fake-scenario`` (text | tool_use | thinking | web_search | error_529 | error_400 |
mid_stream_error | cut | slow | hang | stall | count_tokens | refusal | refusal_mid_stream |
fallback | no_final_blank) and ``x-fake-usage`` (a JSON usage object).

The beta shapes of Anthropic's compaction, advisor and fallback pages:
- ``usage.iterations`` (compaction, advisor, fallback): sent as given in ``x-fake-usage``, on the
  JSON message and, streamed, on the final ``message_delta`` only (``message_start`` carries the
  top-level counts without it, as a stream knows its iterations only at the end).
- ``refusal``: ``stop_reason: "refusal"`` with ``stop_details``, no content; streamed, no content
  block at all. ``refusal_mid_stream``: the text streams, then the refusal stops it.
- ``fallback``: the model of the ``fallback_message`` iteration answered; ``model`` names it
  and a ``fallback`` block (start/stop, no deltas) comes first. When the declined ``message``
  iteration has output (a mid-output decline), a stream starts as the requested model, streams
  its partial text, then the ``fallback`` block and the fallback model's text; a JSON answer
  leaves the partial text out (the refusals-and-fallback page, "Streaming").
- ``no_final_blank``: the stream ends right after its final ``message_delta``, whose blank line
  never comes (no ``message_stop``), as a proxy that trims the body would send it.
A request with a claude.ai login (``Authorization: Bearer sk-ant-oat…`` and the beta flag
``oauth-2025-04-20``) is answered with the unified rate-limit headers a subscription gets
(``anthropic-ratelimit-unified-<window>-utilization|reset|status``): ``QUOTA`` by default, or
the windows of ``x-fake-quota`` (JSON ``{"5h": [utilization, reset, status], …}``).
Every request received is kept in ``requests`` so tests can compare what arrived byte for byte;
every message answered to its end is kept in ``served``, so tests can count what was delivered.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import anthropic_format as wire
from tests.fakes.anthropic_batches import FakeBatches

DEFAULT_USAGE: dict[str, Any] = {
    "input_tokens": 11,
    "cache_creation_input_tokens": 60,
    "cache_read_input_tokens": 300,
    "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 20},
    "output_tokens": 7,
    "service_tier": "standard",
}


QUOTA: dict[str, tuple[float, int, str]] = {
    "5h": (0.42, 1_795_000_000, "allowed"),
    "7d": (0.18, 1_795_400_000, "allowed"),
}


def quota_headers(req: Received) -> list[tuple[bytes, bytes]]:
    """The unified rate-limit headers of a subscription answer; [] for any other request."""
    auth = req.header("authorization") or ""
    beta = req.header("anthropic-beta") or ""
    if not auth.startswith("Bearer sk-ant-oat") or "oauth-2025-04-20" not in beta:
        return []
    windows = json.loads(req.header("x-fake-quota") or "null") or QUOTA
    headers = [(b"anthropic-ratelimit-unified-status", b"allowed")]
    for window, (utilization, reset, status) in windows.items():
        base = f"anthropic-ratelimit-unified-{window}"
        headers += [
            (f"{base}-utilization".encode(), str(utilization).encode()),
            (f"{base}-reset".encode(), str(reset).encode()),
            (f"{base}-status".encode(), status.encode()),
        ]
    return headers


@dataclass
class Received:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None = None  # the peer's address: who connected to us

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None


@dataclass
class FakeAnthropic:
    """The ASGI app. ``pause_s`` is the gap between SSE events in the ``slow`` scenario."""

    requests: list[Received] = field(default_factory=list)
    served: list[dict[str, Any]] = field(default_factory=list)  # messages sent to their end
    pause_s: float = 0.3
    sent_at: list[float] = field(default_factory=list)  # monotonic time each SSE event went out
    batches: FakeBatches = field(default_factory=FakeBatches)  # /v1/messages/batches

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        received = await receive_request(scope, receive, send)
        if received is not None:
            self.requests.append(received)
            await self._answer(received, send)

    async def _answer(self, req: Received, send: Any) -> None:
        scenario = req.header("x-fake-scenario") or "text"
        if scenario.startswith("error_"):
            await _error(send, int(scenario[6:]))
            return
        if req.path == "/v1/messages/count_tokens" or scenario == "count_tokens":
            await _json(send, 200, {"input_tokens": 2095}, req)
            return
        if req.path.startswith("/v1/messages/batches"):
            await self._batch(req, send)
            return
        if req.path == "/v1/models":
            await _json(send, 200, {"data": [{"id": "claude-opus-4-8", "type": "model"}]}, req)
            return
        if req.path != "/v1/messages":
            await _error(send, 404)
            return
        if scenario == "stall":  # never answers in time: the proxy's read timeout fires
            await asyncio.sleep(30)
        try:
            request = json.loads(req.body)
        except ValueError:
            await _error(send, 400)
            return
        usage = json.loads(req.header("x-fake-usage") or "null") or dict(DEFAULT_USAGE)
        requested = request.get("model", "claude-opus-4-8")
        message = _message(_serving_model(requested, scenario, usage), scenario, usage)
        if request.get("stream"):
            streamed = _as_streamed(message, requested, scenario)
            await self._stream(send, streamed, scenario, quota_headers(req))
        else:
            await _json(send, 200, message, req)
        self.served.append(message)

    async def _batch(self, req: Received, send: Any) -> None:
        host = req.header("host") or ""
        status, content_type, body = self.batches.answer(req.method, req.path, req.body, host)
        headers = [
            (b"content-type", content_type.encode()),
            (b"request-id", _request_id().encode()),
        ]
        if "gzip" in (req.header("accept-encoding") or ""):
            body = gzip.compress(body)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self,
        send: Any,
        message: dict[str, Any],
        scenario: str,
        extra: list[tuple[bytes, bytes]] = [],  # noqa: B006 - never changed
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"request-id", _request_id().encode()),
                    *extra,
                ],
            }
        )
        for index, event in enumerate(_events(message, scenario)):
            if scenario == "cut" and index == 4:
                raise ConnectionAbortedError("fake upstream cuts the stream")
            if scenario in {"slow", "hang"} and index:
                await asyncio.sleep(self.pause_s if scenario == "slow" else 30)
            self.sent_at.append(time.monotonic())
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _serving_model(requested: str, scenario: str, usage: dict[str, Any]) -> str:
    """The model that produced the message: the fallback model when one served."""
    if scenario != "fallback":
        return requested
    served = [it["model"] for it in usage.get("iterations", []) if it["type"] == "fallback_message"]
    return served[-1] if served else requested


def _as_streamed(message: dict[str, Any], requested: str, scenario: str) -> dict[str, Any]:
    """A mid-output fallback streams as the requested model until the fallback block."""
    declined = [it for it in message["usage"].get("iterations", []) if it["type"] == "message"]
    if scenario != "fallback" or not any(it.get("output_tokens") for it in declined):
        return message
    partial = {"type": "text", "text": "Sure, here"}
    return {**message, "model": requested, "content": [partial, *message["content"]]}


def _message(model: str, scenario: str, usage: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": "Hi! How can I help?"}]
    stop = "end_turn"
    stop_details = None
    if scenario in {"refusal", "refusal_mid_stream"}:
        content = [] if scenario == "refusal" else content
        stop = "refusal"
        stop_details = {
            "type": "refusal",
            "category": "cyber",
            "explanation": "This request was declined because it could enable cyber harm.",
        }
    elif scenario == "fallback":
        declined = [it for it in usage.get("iterations", []) if it["type"] == "message"]
        source = declined[0].get("model", model) if declined else model
        content.insert(0, {"type": "fallback", "from": {"model": source}, "to": {"model": model}})
    elif scenario == "tool_use":
        content = [
            {"type": "text", "text": "Let me run that."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "Bash",
                "input": {"command": "echo hello"},
            },
        ]
        stop = "tool_use"
    elif scenario == "thinking":
        content = [
            {"type": "thinking", "thinking": "The user greets me.", "signature": "EqQBCgIYAh"},
            {"type": "text", "text": "Hello!"},
        ]
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    return wire.message(message_id, model, content, stop, usage, stop_details)


def _events(message: dict[str, Any], scenario: str) -> list[bytes]:
    events = [wire.message_start(message), wire.ping()]
    for index, block in enumerate(message["content"]):
        events.extend(_block_events(index, block))
    final = wire.delta_usage(message["usage"])
    if scenario == "web_search":
        # Server tools run several sampling iterations: two cumulative message_delta events.
        partial = {**final, "output_tokens": max(1, final["output_tokens"] // 2)}
        events.append(wire.message_delta(None, partial))
    if scenario == "mid_stream_error":
        events.append(wire.sse_event("error", wire.error("overloaded_error", "Overloaded")))
        return events
    events.append(wire.message_delta(message["stop_reason"], final, message.get("stop_details")))
    if scenario == "no_final_blank":
        events[-1] = events[-1].removesuffix(b"\n\n")
        return events
    events.append(wire.message_stop())
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    empty: dict[str, Any] = {"type": kind}
    deltas: list[dict[str, Any]]
    if kind == "text":
        empty["text"] = ""
        text = block["text"]
        deltas = [{"type": "text_delta", "text": text[i : i + 5]} for i in range(0, len(text), 5)]
    elif kind == "fallback":  # a start/stop pair with no deltas
        empty, deltas = dict(block), []
    elif kind == "tool_use":
        empty.update(id=block["id"], name=block["name"], input={})
        raw = json.dumps(block["input"])
        deltas = [{"type": "input_json_delta", "partial_json": raw[i : i + 8]} for i in (0, 8)]
        deltas.append({"type": "input_json_delta", "partial_json": raw[16:]})
    else:
        empty.update(thinking="", signature="")
        deltas = [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    return [
        wire.block_start(index, empty),
        *(wire.block_delta(index, delta) for delta in deltas),
        wire.block_stop(index),
    ]


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


async def _json(send: Any, status: int, payload: dict[str, Any], req: Received) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"request-id", _request_id().encode())]
    headers += quota_headers(req)
    if "gzip" in (req.header("accept-encoding") or ""):
        body = gzip.compress(body)
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


ERRORS = {
    400: ("invalid_request_error", "messages: field required"),
    404: ("not_found_error", "Not found"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_payload(status: int) -> bytes:
    kind, message = ERRORS[status]
    return json.dumps({**wire.error(kind, message), "request_id": "req_e"}).encode()


async def _error(send: Any, status: int) -> None:
    body = error_payload(status)
    headers = [
        (b"content-type", b"application/json"),
        (b"request-id", b"req_e"),
        (b"x-should-retry", b"false"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def receive_request(scope: dict[str, Any], receive: Any, send: Any) -> Received | None:
    """The request of an ASGI call, read whole; None for a lifespan call (answered here)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return None
    body = await _body(receive)
    headers = list(scope["headers"])
    peer = scope.get("client")
    client = (peer[0], peer[1]) if peer else None
    return Received(scope["method"], scope["path"], scope["query_string"], headers, body, client)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    """``python -m tests.fakes.anthropic_upstream --port 9999``: try tokenmeter with no API key."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=9999)
    args = parser.parse_args()
    uvicorn.run(FakeAnthropic(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
