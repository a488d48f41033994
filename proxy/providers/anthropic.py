"""Anthropic Messages API: which paths are metered, the usage tap, and the error JSON.

``provider(upstream)`` bundles them into the ``Provider`` the forwarder is built with.

Why it exists: this is where an Anthropic token is counted. The forwarder streams the upstream
answer to the client untouched and hands each raw chunk to an ``AnthropicTap`` on the side.

The tap: ``AnthropicTap(content_type, content_encoding)`` keeps the ``UsageTap`` contract of
``proxy.providers`` (one tap per exchange; decoding and routing are ``body.BodyTap``'s). A
corrupt compressed body stops the tap; an event or body that does not parse is skipped. Both are
named in ``problems`` and show in the result as missing facts (``complete`` false, no usage).

- JSON bodies are held (up to ``MAX_JSON_BODY_BYTES``; a larger one is dropped, stopping the
  tap) and parsed at ``result()``, once per size seen. SSE bodies are read event by event and
  only ``message_start``, ``message_delta``, ``message_stop`` and ``error`` are JSON-parsed:
  the hundreds of ``content_block_delta`` events are skipped.

Counting rules (Anthropic's Messages API reference): ``input_tokens`` excludes cache, so it maps to
``input`` as is. A stream starts from ``message_start.message.usage``; each ``message_delta``
usage is cumulative, so its non-null fields replace (never add to) what is known. Cache writes
split into 5 min / 1 h by ``usage.cache_creation``; whatever the split does not explain (no
split at all, or a later ``message_delta`` total, which carries no split) counts as 5 min.

``usage.iterations`` (beta: compaction, advisor tool, server-side fallback) is what is billed
when present: the top-level counts leave compaction and advisor steps out, or describe only the
attempt that served. Each entry is kept with its model (``facts.iterations``; pricing bills each
at its own model's rates and leaves out attempts declined before output) and the event's tokens
are the entries' sum. Every number is read by ``body.count``: capped at
``TOKEN_CAP``, never negative, its problem named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proxy.failures import Failure
from proxy.providers import Provider
from proxy.providers.body import BodyTap, JsonBody, as_object, as_str, count, load_object
from proxy.sse import SSEEvent
from proxy.usage import (
    FALLBACK,
    REQUEST_CAP,
    TOKEN_CAP,
    Iteration,
    Problem,
    ResponseFacts,
    Usage,
    summed,
)

ANTHROPIC = "anthropic"
MAX_JSON_BODY_BYTES = 64 * 1024 * 1024
_METERED_PATHS = frozenset({"/v1/messages"})
_STREAM_EVENTS = frozenset({"message_start", "message_delta", "message_stop", "error"})
_ERROR_TYPES: dict[Failure, str] = {  # the proxy's own failures in Anthropic's ``error.type``
    Failure.BAD_REQUEST: "invalid_request_error",
    Failure.NOT_FOUND: "not_found_error",
    Failure.UNAUTHORIZED: "authentication_error",
    Failure.NOT_CONFIGURED: "api_error",
    Failure.CLIENT_TIMEOUT: "timeout_error",
    Failure.BODY_TOO_LARGE: "request_too_large",
    Failure.HEAD_TOO_LARGE: "request_too_large",
    Failure.UPSTREAM_UNREACHABLE: "api_error",
    Failure.OVERLOADED: "overloaded_error",
    Failure.UPSTREAM_TIMEOUT: "timeout_error",
    Failure.SPEND_LIMIT: "billing_error",
}


def is_metered_path(path: str) -> bool:
    """True for the inference endpoint; count_tokens, batches, models and files are not metered.

    ``path`` is the upstream path without query string or any tokenmeter base-path prefix.
    """
    return path in _METERED_PATHS


def is_metered(method: str, path: str) -> bool:
    """Whether this request's answer carries usage to meter."""
    return method == "POST" and is_metered_path(path)


def provider(upstream: str) -> Provider:
    """Anthropic as the default provider (no path prefix), served from ``upstream``."""
    return Provider(
        name=ANTHROPIC,
        upstream=upstream,
        prefix="",
        is_metered=is_metered,
        make_tap=AnthropicTap,
        error_body=error_body,
        key_header=(b"x-api-key", b""),
    )


def error_body(failure: Failure, message: str) -> bytes:
    """Anthropic's error JSON, for answers the proxy makes itself (``failure.status``)."""
    error = {"type": _ERROR_TYPES[failure], "message": message}
    return json.dumps({"type": "error", "error": error}).encode()


@dataclass(slots=True)
class _Counts:
    """Anthropic's usage numbers as last reported; ``None`` = never reported. Whatever is wrong
    with a number goes to ``problems`` (the tap's set)."""

    problems: set[str]
    input: int | None = None
    cache_read: int | None = None
    cache_written: int | None = None  # cache_creation_input_tokens, the authoritative total
    split_5m: int | None = None  # cache_creation.ephemeral_5m_input_tokens
    split_1h: int | None = None  # cache_creation.ephemeral_1h_input_tokens
    output: int | None = None
    thinking: int | None = None
    web_searches: int | None = None
    iterations: tuple[Iteration, ...] | None = None  # usage.iterations, last reported

    def update(self, usage: dict[str, Any]) -> None:
        """Replace every field the usage object reports; null or missing ones change nothing."""
        problems = self.problems
        self.input = _pick(usage.get("input_tokens"), self.input, problems)
        self.cache_read = _pick(usage.get("cache_read_input_tokens"), self.cache_read, problems)
        written = usage.get("cache_creation_input_tokens")
        self.cache_written = _pick(written, self.cache_written, problems)
        split = as_object(usage.get("cache_creation"))
        self.split_5m = _pick(split.get("ephemeral_5m_input_tokens"), self.split_5m, problems)
        self.split_1h = _pick(split.get("ephemeral_1h_input_tokens"), self.split_1h, problems)
        self.output = _pick(usage.get("output_tokens"), self.output, problems)
        details = as_object(usage.get("output_tokens_details"))
        self.thinking = _pick(details.get("thinking_tokens"), self.thinking, problems)
        tools = as_object(usage.get("server_tool_use"))
        searches = count(tools.get("web_search_requests"), problems, REQUEST_CAP)
        self.web_searches = self.web_searches if searches is None else searches
        if (iterations := usage.get("iterations")) is not None:
            self.iterations = _iterations(iterations, problems)

    def to_usage(self) -> Usage:
        write_5m, write_1h = self._cache_writes()
        return Usage(
            input=self.input or 0,
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=self.cache_read or 0,
            output=self.output or 0,
            web_search_requests=self.web_searches or 0,
            reasoning=self.thinking or 0,
        )

    def _cache_writes(self) -> tuple[int, int]:
        """(5 min, 1 h) writes: the split where given, any difference from the total as 5 min."""
        split_5m, split_1h = self.split_5m or 0, self.split_1h or 0
        if self.cache_written is None:
            return split_5m, split_1h
        write_5m = self.cache_written - split_1h  # the 5 min split and whatever it leaves out
        if write_5m < 0:  # the total shrank below the split: take the rest from 1 h
            return 0, max(split_1h + write_5m, 0)
        return write_5m, split_1h


def _pick(value: object, current: int | None, problems: set[str]) -> int | None:
    new = count(value, problems)
    return current if new is None else new


def _iterations(value: object, problems: set[str]) -> tuple[Iteration, ...] | None:
    """``usage.iterations`` as ``Iteration`` values; None (and a problem) if it is unreadable."""
    if not isinstance(value, list):
        problems.add(Problem.BAD_ITERATIONS)
        return None
    read = []
    for entry in value:
        kind = as_str(entry.get("type")) if isinstance(entry, dict) else None
        if kind is None:
            problems.add(Problem.BAD_ITERATIONS)
            return None
        counts = _Counts(problems)
        counts.update({k: v for k, v in entry.items() if k != "iterations"})
        read.append(Iteration(kind, as_str(entry.get("model")), counts.to_usage()))
    return tuple(read)


def _with_iterations(
    facts: ResponseFacts, iterations: tuple[Iteration, ...], problems: set[str]
) -> None:
    """Bill what the iterations say (README, "How it works"): the event's tokens are their sum, each
    entry names its model (the response's own where it names none), and the event's model is
    the one that produced the returned message: the fallback model when one served."""
    own = facts.model
    facts.iterations = tuple(
        it if it.model is not None else Iteration(it.kind, own, it.usage) for it in iterations
    )
    facts.usage = summed((it.usage for it in iterations), facts.usage)
    if TOKEN_CAP in facts.usage.by_kind().values():  # capped: the sum is absurd (or at the cap)
        problems.add(Problem.USAGE_OVER_CAP)
    served = [it.model for it in iterations if it.kind == FALLBACK and it.model]
    facts.model = served[-1] if served else own


class AnthropicTap(BodyTap):
    """Reads usage from one Anthropic response as its raw chunks are forwarded."""

    __slots__ = ("_counts", "_facts")

    def __init__(self, content_type: str | None, content_encoding: str | None) -> None:
        body = JsonBody(MAX_JSON_BODY_BYTES)  # past the cap: dropped, and counted in problems
        super().__init__(content_type, content_encoding, body, wanted=_STREAM_EVENTS)
        self._facts = ResponseFacts()
        self._counts = _Counts(self._problems)

    def _read(self) -> ResponseFacts:
        if self._json is not None:
            self._read_json_body(self._json)
        facts = self._facts.with_usage(self._counts.to_usage())
        if self._counts.iterations:
            _with_iterations(facts, self._counts.iterations, self._problems)
        return facts

    def _on_event(self, event: SSEEvent) -> None:
        name = event.event
        if name is not None and name not in _STREAM_EVENTS:
            return  # content_block_*, ping, and event types added in the future
        if name == "message_stop":
            self._facts.complete = True
            return
        payload = load_object(event.data)
        if payload is None:
            self._problems.add(Problem.UNPARSEABLE)
            if name == "error":
                self._facts.error_type = "unknown"
            return
        self._on_payload(payload)

    def _on_payload(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind == "message_start":
            self._read_message(as_object(payload.get("message")))
        elif kind == "message_delta":
            self._read_usage(payload.get("usage"))
            stop_reason = as_str(as_object(payload.get("delta")).get("stop_reason"))
            self._facts.stop_reason = stop_reason or self._facts.stop_reason
        elif kind == "message_stop":
            self._facts.complete = True
        elif kind == "error":
            self._read_error(payload)

    def _read_message(self, message: dict[str, Any]) -> None:
        _read_message(self._facts, self._counts, message)

    def _read_usage(self, usage: object) -> None:
        _read_usage(self._facts, self._counts, usage)

    def _read_error(self, payload: dict[str, Any]) -> None:
        self._facts.error_type = as_str(as_object(payload.get("error")).get("type")) or "unknown"

    def _read_json_body(self, body: JsonBody) -> None:
        """Rebuild the facts from the whole body held so far (a body is parsed only once)."""
        payload = body.parse()
        self._facts, self._counts = ResponseFacts(), _Counts(self._problems)
        if payload is None:
            if body.size and body.whole:  # not a JSON object (or cut short), not dropped
                self._problems.add(Problem.UNPARSEABLE)
            return
        if payload.get("type") == "error":
            self._read_error(payload)
        else:
            self._read_message(payload)
        self._facts.complete = True


def _read_message(facts: ResponseFacts, counts: _Counts, message: dict[str, Any]) -> None:
    facts.model = as_str(message.get("model")) or facts.model
    facts.message_id = as_str(message.get("id")) or facts.message_id
    facts.stop_reason = as_str(message.get("stop_reason")) or facts.stop_reason
    _read_usage(facts, counts, message.get("usage"))


def _read_usage(facts: ResponseFacts, counts: _Counts, usage: object) -> None:
    if not isinstance(usage, dict):
        return
    counts.update(usage)
    facts.saw_usage = True
    facts.service_tier = as_str(usage.get("service_tier")) or facts.service_tier
    facts.inference_geo = as_str(usage.get("inference_geo")) or facts.inference_geo
    facts.speed = as_str(usage.get("speed")) or facts.speed


def message_facts(message: dict[str, Any]) -> ResponseFacts:
    """The facts of one Message object read whole (a batch result, a Claude Code transcript
    line): the same reading, and the same problems, as the tap's for a JSON answer."""
    counts = _Counts(set())
    facts = ResponseFacts()
    _read_message(facts, counts, message)
    result = facts.with_usage(counts.to_usage())
    if counts.iterations:
        _with_iterations(result, counts.iterations, counts.problems)
    result.complete = result.metered = True
    result.problems = tuple(sorted(counts.problems))
    return result
