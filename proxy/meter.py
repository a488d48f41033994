"""The finish line of every exchange: price it, count it, hand it to the recorder.

``Meter`` is the ``Sink`` the forwarder calls once per exchange, synchronously and without I/O:
pricing is a pure function, metrics are in-process counters, and ``recorder.submit`` only
enqueues. An exchange with no usage (count_tokens, models, most errors) costs exactly $0;
usage on a model with no price gets cost ``None`` (unknown), never $0. So does a metered answer
that succeeded but never said its usage (an OpenAI stream cut before its usage chunk, a stream
cut before ``message_start``): upstream billed something nobody saw, so the event is recorded
unpriced with the problem ``usage_missing``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from proxy.usage import Cost, Problem, UsageEvent, merged


class Sink(Protocol):
    """Where a finished event goes: pricing, metrics and the recorder, wired by ``create_app``."""

    def __call__(self, event: UsageEvent) -> None: ...


class Pricer(Protocol):
    def price(self, event: UsageEvent) -> Cost | None: ...


class Observer(Protocol):
    def observe(self, event: UsageEvent) -> None: ...


class Submitter(Protocol):
    def submit(self, event: UsageEvent) -> None: ...


class Meter:
    """The finish line of every exchange: price it, count it, hand it to the recorder."""

    def __init__(self, pricer: Pricer, metrics: Observer, recorder: Submitter) -> None:
        self._pricer = pricer
        self._metrics = metrics
        self._recorder = recorder

    def __call__(self, event: UsageEvent) -> None:
        event.cost = self._cost(event)
        self._metrics.observe(event)
        self._recorder.submit(event)

    def _cost(self, event: UsageEvent) -> Cost | None:
        facts = event.facts
        usage = facts.usage
        if usage.total_tokens() or usage.web_search_requests or facts.iterations:
            return self._pricer.price(event)
        if facts.distrusted:
            return None
        if facts.metered and not facts.saw_usage and _succeeded(event):
            facts.problems = merged(facts.problems, Problem.USAGE_MISSING)
            return None
        return Cost(Decimal(0), {}, Decimal(0), "no-usage")


def _succeeded(event: UsageEvent) -> bool:
    """Upstream answered without an error: such an answer is billed, so it carries usage."""
    return (event.http_status or 0) < 400 and event.facts.error_type is None
