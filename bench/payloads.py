"""The bytes the bench sends and serves, built once: Claude Code-like requests, Anthropic responses.

Requests are ~100 KB ``/v1/messages`` bodies (model ``claude-opus-4-8``, a messages array padded to
the size Claude Code sends mid-session) with ``x-claude-code-session-id`` set, so a proxy can
attribute the request without parsing the body. ``"stream"`` is the first key so the mock can
usually tell JSON from SSE by looking at the first bytes only.

Responses are Anthropic's real wire format, built by ``tests/fakes/anthropic_format.py`` as the
tests' fake API builds its own: a JSON ``Message``, or an SSE stream of ``message_start`` (usage
with the ``cache_creation`` TTL split), pings, ``content_block_*`` events, ``message_delta`` with
cumulative usage, and ``message_stop``. ``sse_events()`` returns one ``bytes`` per event so the
mock can write them one at a time, as the API does.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import anthropic_format as wire

MODEL = "claude-opus-4-8"
SESSION_ID = "0b6f1c9e-bench-4c1d-9a53-5e6f7a8b9c0d"
EVENTS_PER_STREAM = 100
REQUEST_BYTES = 100_000

START_USAGE: dict[str, Any] = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 48000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
    "output_tokens": 1,
    "service_tier": "standard",
}


def request_body(stream: bool, size: int = REQUEST_BYTES) -> bytes:
    """A Claude Code-like request body of about ``size`` bytes."""
    turn = {"role": "user", "content": [{"type": "text", "text": "x" * 2000}]}
    body: dict[str, Any] = {"stream": stream, "model": MODEL, "max_tokens": 32000}
    body["metadata"] = {"user_id": f"user_bench_account_bench_session_{SESSION_ID}"}
    body["messages"] = [turn] * max(1, size // 2060)
    return json.dumps(body, separators=(",", ":")).encode()


def request_headers(api_key: str | None = None) -> dict[str, str]:
    """The headers Claude Code sends that matter to a proxy (``api_key``: a tokenmeter key)."""
    return {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": api_key or "sk-ant-bench-not-a-real-key",
        "x-claude-code-session-id": SESSION_ID,
        "user-agent": "claude-cli/2.1.0 (external, cli)",
    }


def is_stream_request(body: bytes) -> bool:
    """Whether a request body asks for SSE. Ours put it first; a proxy that re-encodes the body
    (LiteLLM) may move it, so look further when the head does not say."""
    head = body[:64]
    if b'"stream"' in head:
        return b'"stream":true' in head or b'"stream": true' in head
    return b'"stream":true' in body or b'"stream": true' in body


def _text_deltas() -> int:
    fixed = 7  # message_start, ping, block start, block stop, message_delta, message_stop, ping
    return EVENTS_PER_STREAM - fixed


def json_message() -> bytes:
    """A non-streaming Message with the same content and final usage as the stream."""
    return json.dumps(_message(), separators=(",", ":")).encode()


def sse_events() -> list[bytes]:
    """Exactly ``EVENTS_PER_STREAM`` SSE events, each ``event: …\\ndata: …\\n\\n``."""
    message = _message()
    events = [wire.message_start(message), wire.ping()]
    events.append(wire.block_start(0, {"type": "text", "text": ""}))
    for i in range(_text_deltas()):
        events.append(wire.block_delta(0, {"type": "text_delta", "text": _word(i)}))
        if i == _text_deltas() // 2:
            events.append(wire.ping())
    events.append(wire.block_stop(0))
    events.append(wire.message_delta("end_turn", wire.delta_usage(message["usage"])))
    events.append(wire.message_stop())
    assert len(events) == EVENTS_PER_STREAM
    return events


def _message() -> dict[str, Any]:
    """The whole reply: one text block of ``_text_deltas()`` words, 3 output tokens each."""
    usage = dict(START_USAGE, output_tokens=_text_deltas() * 3)
    text = [{"type": "text", "text": "".join(_word(i) for i in range(_text_deltas()))}]
    return wire.message("msg_01BenchBenchBenchBenchBench", MODEL, text, "end_turn", usage)


def not_found() -> bytes:
    """Anthropic's 404 error body, for any path the mock does not serve."""
    body = wire.error("not_found_error", "mock: no such path")
    return json.dumps(body, separators=(",", ":")).encode()


def _word(i: int) -> str:
    return f" token{i} of the bench reply,"
