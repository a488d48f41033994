"""Anthropic's Messages API wire format: one definition for the test fakes and the bench.

The shapes (Anthropic's Messages API reference and its "Streaming messages" page):

- a ``Message``: ``id``, ``type``, ``role``, ``model``, ``content``, ``stop_reason``,
  ``stop_sequence`` (``stop_details`` when declined), ``usage``;
- an SSE event: ``event: <name>`` and ``data: <compact JSON>`` lines, then a blank line;
- a stream: ``message_start`` (the message without content or stop reason; usage with the
  ``cache_creation`` TTL split and ``output_tokens`` 1, no ``iterations`` yet), ``ping``, per
  content block ``content_block_start`` / ``content_block_delta``... / ``content_block_stop``,
  ``message_delta`` (the stop reason and the *cumulative* usage, which carries no
  ``cache_creation`` split nor ``service_tier``), ``message_stop``;
- an error body: ``{"type": "error", "error": {"type": ..., "message": ...}}``.

``tests/fakes/anthropic_upstream.py`` (the fake API the tests drive with the real SDK) and
``bench/payloads.py`` (what the bench's mock upstream serves) build their answers from these
functions, so both speak the same format. Standard library only: the bench runs with nothing but
the project installed, and imports this module from the repository checkout.
"""

from __future__ import annotations

import json
from typing import Any

Json = dict[str, Any]
_START_ONLY = frozenset({"cache_creation", "service_tier"})  # usage a message_delta leaves out


def sse_event(name: str, data: Json) -> bytes:
    """One named SSE event, its data as compact JSON, as the API writes it."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def message(
    message_id: str,
    model: str,
    content: list[Json],
    stop_reason: str | None,
    usage: Json,
    stop_details: Json | None = None,
) -> Json:
    """A ``Message`` object: a JSON answer whole, or what a stream adds up to."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        **({"stop_details": stop_details} if stop_details else {}),
        "usage": usage,
    }


def message_start(final: Json) -> bytes:
    """The first event of the stream whose whole message is ``final``."""
    usage = {k: v for k, v in final["usage"].items() if k != "iterations"} | {"output_tokens": 1}
    start = {**final, "content": [], "stop_reason": None, "usage": usage}
    start.pop("stop_details", None)
    return sse_event("message_start", {"type": "message_start", "message": start})


def ping() -> bytes:
    return sse_event("ping", {"type": "ping"})


def block_start(index: int, block: Json) -> bytes:
    """``content_block_start`` of the block at ``index``, ``block`` as it starts (empty)."""
    start = {"type": "content_block_start", "index": index, "content_block": block}
    return sse_event("content_block_start", start)


def block_delta(index: int, delta: Json) -> bytes:
    event = {"type": "content_block_delta", "index": index, "delta": delta}
    return sse_event("content_block_delta", event)


def block_stop(index: int) -> bytes:
    return sse_event("content_block_stop", {"type": "content_block_stop", "index": index})


def delta_usage(usage: Json) -> Json:
    """The cumulative usage a ``message_delta`` carries for a message's ``usage``."""
    return {k: v for k, v in usage.items() if k not in _START_ONLY}


def message_delta(stop_reason: str | None, usage: Json, stop_details: Json | None = None) -> bytes:
    """``message_delta`` with ``usage`` as given (see ``delta_usage``)."""
    delta: Json = {"stop_reason": stop_reason, "stop_sequence": None}
    if stop_details:
        delta["stop_details"] = stop_details
    return sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})


def message_stop() -> bytes:
    return sse_event("message_stop", {"type": "message_stop"})


def error(kind: str, text: str) -> Json:
    """An error body (a JSON answer) or the data of an SSE ``error`` event."""
    return {"type": "error", "error": {"type": kind, "message": text}}
