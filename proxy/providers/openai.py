"""OpenAI's API and compatible servers: metered paths, usage tap, error JSON.

``provider(upstream)`` bundles them, with ``openai_stream``'s include_usage rewriting, into the
``Provider`` the forwarder is built with. OpenAI traffic is selected by the path prefix
``/openai``: an agent uses ``base_url="http://tokenmeter:8080/openai/v1"`` and
``/openai/v1/...`` goes to ``upstream + /v1/...``.

Metered (``is_metered``): ``POST`` to ``/v1/chat/completions``, ``/v1/responses``,
``/v1/responses/compact``, ``/v1/completions`` and ``/v1/embeddings``. Every other path passes
through and is recorded with zero tokens.

Counting rules (OpenAI's API reference): OpenAI's ``prompt_tokens`` / ``input_tokens`` INCLUDE
``cached_tokens`` and ``cache_write_tokens``, so ``cache_read`` = cached, ``cache_write_5m`` =
cache writes (the kind the pricer bills at the catalog's cache-write rate), ``input`` = prompt -
cached - cache writes (never below 0), ``output`` = ``completion_tokens`` / ``output_tokens``.
Reasoning tokens are part of output; ``reasoning`` records them for observability only.

The tap: ``OpenAITap`` keeps the ``UsageTap`` contract of ``proxy.providers`` (one per
exchange; decoding and routing are ``body.BodyTap``'s, as for ``AnthropicTap``); its
``result()`` has nothing from a JSON body once the tap stopped. Every usage number goes through
``body.count`` (capped, never negative, problems named). JSON bodies up to ``FULL_PARSE_BYTES``
are parsed at ``result()``; a larger one (an embeddings batch can be tens of MB) keeps only its
head and tail, where OpenAI puts ``model``, ``id`` and ``usage``, and only those are read. SSE:
Chat / legacy completions streams are data-only and end with ``data: [DONE]``; only the first
chunk (model, id) and chunks that carry a usage object, a finish reason or an error are parsed.
Responses streams name their events; only ``response.created``, ``response.completed``,
``response.incomplete``, ``response.failed`` and ``error`` are parsed. A chat stream carries
usage only in its last chunk, so a stream cut before it records the model and no tokens, and
the meter records its cost as unknown, never $0 (``openai_stream`` makes sure upstream sends
that chunk).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import replace
from typing import Any

from proxy.failures import Failure
from proxy.providers import Provider
from proxy.providers.body import BodyTap, JsonBody, as_object, as_str, count, load_object
from proxy.providers.openai_stream import make_filter, prepare
from proxy.sse import SSEEvent
from proxy.usage import Problem, ResponseFacts, Usage

OPENAI = "openai"
PREFIX = "/openai"
FULL_PARSE_BYTES = 1024 * 1024
EDGE_BYTES = 64 * 1024  # head and tail kept of a larger JSON body

_METERED_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/responses/compact",
        "/v1/completions",
        "/v1/embeddings",
    }
)
_RESPONSE_EVENTS = frozenset(
    {"response.created", "response.completed", "response.incomplete", "response.failed"}
)
_FINAL_RESPONSE_EVENTS = _RESPONSE_EVENTS - {"response.created"}
_WORTH_PARSING = re.compile(
    r'"usage"\s*:\s*\{|"finish_reason"\s*:\s*"|"error"\s*:\s*\{'
    r'|"type"\s*:\s*"(?:error|response\.(?:created|completed|incomplete|failed))"'
)
_MODEL = re.compile(r'"model"\s*:\s*"([^"\\]*)"')
_ID = re.compile(r'"id"\s*:\s*"([^"\\]*)"')
_ERRORS: dict[Failure, tuple[str, str | None]] = {  # the proxy's own failures: (type, code)
    Failure.BAD_REQUEST: ("invalid_request_error", None),  # the type says it all
    Failure.NOT_FOUND: ("invalid_request_error", None),  # as OpenAI answers an unknown URL
    Failure.UNAUTHORIZED: ("invalid_request_error", "invalid_api_key"),  # as OpenAI answers 401
    Failure.NOT_CONFIGURED: ("server_error", "no_company_key"),
    Failure.CLIENT_TIMEOUT: ("invalid_request_error", "request_timeout"),
    Failure.BODY_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    Failure.HEAD_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    Failure.UPSTREAM_UNREACHABLE: ("server_error", "upstream_unreachable"),
    Failure.OVERLOADED: ("server_error", "proxy_overloaded"),
    Failure.UPSTREAM_TIMEOUT: ("server_error", "upstream_timeout"),
    Failure.SPEND_LIMIT: ("insufficient_quota", "insufficient_quota"),  # as OpenAI's own quota
}


def is_metered(method: str, path: str) -> bool:
    """Whether this request's answer carries usage (``path`` without ``/openai`` or query)."""
    return method == "POST" and path in _METERED_PATHS


def provider(upstream: str) -> Provider:
    """OpenAI under the ``/openai`` path prefix, served from ``upstream``."""
    return Provider(
        name=OPENAI,
        upstream=upstream,
        prefix=PREFIX,
        is_metered=is_metered,
        make_tap=OpenAITap,
        error_body=error_body,
        prepare=prepare,
        make_filter=make_filter,
        key_header=(b"authorization", b"Bearer "),
    )


def error_body(failure: Failure, message: str) -> bytes:
    """OpenAI's error JSON, for answers the proxy makes itself (``failure.status``)."""
    kind, code = _ERRORS[failure]
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


# --- usage ------------------------------------------------------------------------------------


def usage_from(usage: dict[str, Any], problems: set[str] | None = None) -> Usage:
    """Chat/completions/embeddings ``usage`` or Responses ``usage`` in tokenmeter's kinds; what
    is wrong with a number (``body.count``) is added to ``problems``."""
    found: set[str] = set() if problems is None else problems

    def n(value: object) -> int:
        return count(value, found) or 0

    if "input_tokens" in usage:  # Responses API
        prompt, output = n(usage.get("input_tokens")), n(usage.get("output_tokens"))
        details = as_object(usage.get("input_tokens_details"))
        out_details = as_object(usage.get("output_tokens_details"))
    else:  # Chat Completions, legacy completions, embeddings
        prompt, output = n(usage.get("prompt_tokens")), n(usage.get("completion_tokens"))
        details = as_object(usage.get("prompt_tokens_details"))
        out_details = as_object(usage.get("completion_tokens_details"))
    cached = n(details.get("cached_tokens"))
    written = n(details.get("cache_write_tokens"))
    return Usage(
        input=max(prompt - cached - written, 0),
        cache_write_5m=written,
        cache_read=cached,
        output=output,
        reasoning=n(out_details.get("reasoning_tokens")),
    )


# --- the tap ----------------------------------------------------------------------------------


def _payload(body: JsonBody) -> dict[str, Any] | None:
    """The body as an object: parsed whole, or rebuilt from the edges of a large one."""
    return body.parse() if body.whole else _from_edges(*body.edges())


def _from_edges(head: str, tail: str) -> dict[str, Any]:
    """``model``, ``id`` and ``usage`` of a large body: OpenAI puts them first or last."""
    payload: dict[str, Any] = {}
    starts = [m.end() for m in re.finditer(r'"usage"\s*:\s*', tail)]
    if starts:
        with contextlib.suppress(ValueError):  # cut short by the tail's start or end
            payload["usage"] = json.JSONDecoder().raw_decode(tail, starts[-1])[0]
    models = _MODEL.findall(tail)[-1:] or _MODEL.findall(head)[:1]  # embeddings last, chat first
    ids = _ID.findall(head)[:1]
    if models:
        payload["model"] = models[0]
    if ids:
        payload["id"] = ids[0]
    return payload


class OpenAITap(BodyTap):
    """Reads usage from one OpenAI response as its raw chunks are forwarded."""

    __slots__ = ("_events", "_facts")

    def __init__(self, content_type: str | None, content_encoding: str | None) -> None:
        body = JsonBody(FULL_PARSE_BYTES, edge=EDGE_BYTES)  # never overflows: keeps its edges
        super().__init__(content_type, content_encoding, body)
        self._facts = ResponseFacts()
        self._events = 0

    def _read(self) -> ResponseFacts:
        if self._json is None:
            return replace(self._facts, usage=replace(self._facts.usage))
        facts = ResponseFacts()
        payload = None if self._stopped else _payload(self._json)
        if payload is not None:
            _read_body(facts, payload, self._problems)
            facts.complete = True
        elif not self._stopped and self._json.size:
            self._problems.add(Problem.UNPARSEABLE)
        return facts

    def _on_event(self, event: SSEEvent) -> None:
        self._events += 1
        name, data = event.event, event.data
        if name is None and data.startswith("[DONE]"):
            self._facts.complete = True
            return
        wanted = name in _RESPONSE_EVENTS or name == "error"
        if name is None:
            wanted = self._events == 1 or _worth_parsing(data)
        if not wanted:
            return  # content deltas, and event types added in the future
        payload = load_object(data)
        if payload is None:
            self._problems.add(Problem.UNPARSEABLE)
            self._facts.error_type = "unknown" if name == "error" else self._facts.error_type
            return
        _read_event(self._facts, payload, self._problems)


def _worth_parsing(data: str) -> bool:
    """Whether a nameless event may carry usage, a finish reason or an error.

    Literal checks first: nearly every chat chunk is a content delta with ``"usage":null`` and
    ``"finish_reason":null``, and those must cost no regex.
    """
    if '"usage"' in data and '"usage":null' not in data:
        return True
    if '"finish_reason"' in data and '"finish_reason":null' not in data:
        return True
    if '"error"' not in data and '"type"' not in data:
        return False
    return _WORTH_PARSING.search(data) is not None


def _read_event(facts: ResponseFacts, payload: dict[str, Any], problems: set[str]) -> None:
    """One parsed SSE event: a chat chunk, a Responses event or an error."""
    kind = as_str(payload.get("type")) or ""
    if kind in _RESPONSE_EVENTS:
        _read_object(facts, as_object(payload.get("response")), problems)
        facts.complete = facts.complete or kind in _FINAL_RESPONSE_EVENTS
    elif kind == "error":
        error = as_object(payload.get("error")) or payload
        facts.error_type = as_str(error.get("code")) or as_str(error.get("type")) or "unknown"
    else:
        _read_body(facts, payload, problems)


def _read_body(facts: ResponseFacts, payload: dict[str, Any], problems: set[str]) -> None:
    """A whole JSON answer or one chat chunk: an error, or an object with usage."""
    error = payload.get("error")
    if isinstance(error, dict) and "object" not in payload:  # an error alone, not a response
        facts.error_type = as_str(error.get("type")) or as_str(error.get("code")) or "unknown"
        return
    _read_object(facts, payload, problems)


def _read_object(facts: ResponseFacts, obj: dict[str, Any], problems: set[str]) -> None:
    """A chat completion (chunk), completion, embeddings list or Responses ``response``."""
    facts.model = as_str(obj.get("model")) or facts.model
    facts.message_id = as_str(obj.get("id")) or facts.message_id
    facts.service_tier = as_str(obj.get("service_tier")) or facts.service_tier
    facts.stop_reason = _stop_reason(obj) or facts.stop_reason
    usage = obj.get("usage")
    if isinstance(usage, dict):
        facts.usage = usage_from(usage, problems)
        facts.saw_usage = True
    failure = obj.get("error")
    if obj.get("status") == "failed" and isinstance(failure, dict):
        facts.error_type = as_str(failure.get("code")) or "unknown"


def _stop_reason(obj: dict[str, Any]) -> str | None:
    choices = obj.get("choices")
    if isinstance(choices, list) and choices:
        return as_str(as_object(choices[0]).get("finish_reason"))
    reason = as_str(as_object(obj.get("incomplete_details")).get("reason"))
    return reason or as_str(obj.get("status"))
