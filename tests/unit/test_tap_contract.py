"""The usage tap contract (``proxy/providers/__init__.py``), held by every provider's tap.

``feed`` and ``finish`` never raise, whatever the body; ``result()`` never raises either and is a
fresh ``ResponseFacts`` each time; every ``Problem`` a tap (or the meter) can meet reaches
``tokenmeter_usage_problems_total`` and the recorded event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from proxy.meter import Meter
from proxy.metrics import Metrics
from proxy.pricing import Pricer
from proxy.providers import UsageTap
from proxy.providers import anthropic as anthropic_provider
from proxy.providers.anthropic import AnthropicTap
from proxy.providers.openai import OpenAITap
from proxy.sse import DEFAULT_MAX_EVENT_BYTES
from proxy.usage import Attribution, Problem, Status, UsageEvent

TAPS: dict[str, Callable[[str | None, str | None], UsageTap]] = {
    "anthropic": AnthropicTap,
    "openai": OpenAITap,
}
SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"
DEEP = b'{"model": "m", "usage": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def fed(provider: str, body: bytes, content_type: str | None, encoding: str | None) -> UsageTap:
    tap = TAPS[provider](content_type, encoding)
    tap.feed(body)
    tap.finish()
    return tap


@pytest.mark.parametrize("provider", sorted(TAPS))
@pytest.mark.parametrize("content_type", [JSON, None], ids=["json", "no-type"])
def test_a_json_body_nested_past_the_parsers_depth_is_a_problem_not_a_lost_event(
    provider: str, content_type: str | None
) -> None:
    # result() raised RecursionError here, so the forwarder recorded no event at all.
    facts = fed(provider, DEEP, content_type, None).result()
    assert facts.metered
    assert Problem.UNPARSEABLE in facts.problems


@pytest.mark.parametrize("provider", sorted(TAPS))
def test_an_sse_event_nested_past_the_parsers_depth_is_a_problem(provider: str) -> None:
    name = "message_start" if provider == "anthropic" else "response.completed"
    facts = fed(provider, b"event: %s\ndata: %s\n\n" % (name.encode(), DEEP), SSE, None).result()
    assert Problem.UNPARSEABLE in facts.problems


@settings(max_examples=150, deadline=None)
@given(
    provider=st.sampled_from(sorted(TAPS)),
    content_type=st.sampled_from([SSE, JSON, None, "text/plain"]),
    encoding=st.sampled_from([None, "gzip", "br", "zstd", "identity", "x-unknown"]),
    chunks=st.lists(st.binary(max_size=200), max_size=6),
)
def test_feed_finish_and_result_never_raise_and_result_is_always_fresh(
    provider: str, content_type: str | None, encoding: str | None, chunks: list[bytes]
) -> None:
    tap = TAPS[provider](content_type, encoding)
    for chunk in chunks:
        tap.feed(chunk)
        tap.result()  # may be asked at any time, also mid-body
    tap.finish()
    tap.finish()  # idempotent
    first, second = tap.result(), tap.result()
    assert first is not second
    assert first.metered
    assert list(first.problems) == sorted(set(first.problems))


# --- every problem reaches the metric and the event -------------------------------------------


def _usage_json(**usage: object) -> bytes:
    message = {"type": "message", "model": "claude-opus-4-8", "usage": {"input_tokens": 3, **usage}}
    return json.dumps(message).encode()


def _openai_chat_without_usage() -> bytes:
    chunk = {"id": "c-1", "object": "chat.completion.chunk", "model": "gpt-5", "choices": []}
    return b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"


_HUGE_EVENT = b"event: message_start\ndata: " + b"x" * (DEFAULT_MAX_EVENT_BYTES + 1) + b"\n\n"
# problem -> (provider, body, content type, content encoding)
CASES: dict[Problem, tuple[str, bytes, str | None, str | None]] = {
    Problem.UNDECODABLE_BODY: ("anthropic", b"not gzip", JSON, "gzip"),
    Problem.OVERSIZED_BODY: ("anthropic", _usage_json(output_tokens=1) * 2, JSON, None),
    Problem.OVERSIZED_EVENT: ("anthropic", _HUGE_EVENT, SSE, None),
    Problem.UNPARSEABLE: ("anthropic", b"event: message_start\ndata: {oops\n\n", SSE, None),
    Problem.USAGE_MISSING: ("openai", _openai_chat_without_usage(), SSE, None),
    Problem.USAGE_NEGATIVE: ("anthropic", _usage_json(output_tokens=-1), JSON, None),
    Problem.USAGE_NOT_INTEGER: ("anthropic", _usage_json(output_tokens=1.5), JSON, None),
    Problem.USAGE_OVER_CAP: ("anthropic", _usage_json(output_tokens=10**13), JSON, None),
    Problem.BAD_ITERATIONS: ("anthropic", _usage_json(iterations="x"), JSON, None),
}


class _Kept:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def submit(self, event: UsageEvent) -> None:
        self.events.append(event)


def test_every_problem_has_a_case() -> None:
    assert set(CASES) == set(Problem)


@pytest.mark.parametrize("problem", list(Problem), ids=str)
def test_every_problem_a_tap_meets_is_counted_and_recorded(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    if problem is Problem.OVERSIZED_BODY:  # a cap that the case's body passes
        monkeypatch.setattr(anthropic_provider, "MAX_JSON_BODY_BYTES", 64)
    provider, body, content_type, encoding = CASES[problem]
    tap = TAPS[provider](content_type, encoding)
    for at in range(0, len(body), 65536):
        tap.feed(body[at : at + 65536])
    tap.finish()
    metrics, kept = Metrics(CollectorRegistry()), _Kept()
    Meter(Pricer(), metrics, kept)(_event(provider, tap))
    counted = metrics.registry.get_sample_value(
        "tokenmeter_usage_problems_total", {"provider": provider, "problem": problem.value}
    )
    assert counted == 1
    assert problem in kept.events[0].facts.problems


def _event(provider: str, tap: UsageTap) -> UsageEvent:
    return UsageEvent(
        provider=provider,
        method="POST",
        path="/v1/messages",
        started_at=datetime(2026, 11, 26, tzinfo=UTC),
        attribution=Attribution(),
        facts=tap.result(),
        status=Status.OK,
        http_status=200,
        stream=False,
        duration_ms=1.0,
    )
