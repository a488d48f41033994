"""The finish line of every exchange: price it, count it, hand it to the recorder.

``Meter`` is the ``Sink`` the forwarder calls once per exchange, synchronously and without I/O:
pricing is a pure function, metrics are in-process counters, and ``recorder.submit`` only
enqueues. The event it is handed is never changed: ``priced(event)`` is a new event with its
cost (and its problem), and that one is counted, recorded and returned.

An exchange with no usage (count_tokens, models, most errors) costs exactly $0; usage on a
model with no price gets cost ``None`` (unknown), never $0. So does a metered answer
that succeeded but never said its usage (an OpenAI stream cut before its usage chunk, a stream
cut before ``message_start``): upstream billed something nobody saw, so the event is recorded
unpriced with the problem ``usage_missing``.

With ``TOKENMETER_ACCESS_LOG=json`` the meter also hands each finished event to ``AccessLog``:
one JSON line per exchange (status, model, tokens, cost, duration, attribution; never a key, a
prompt or a response) on the ``tokenmeter.access`` logger. Off, it costs one ``is None`` test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, Protocol

from proxy.usage import Cost, Problem, UsageEvent, merged


class Sink(Protocol):
    """Where a finished event goes: pricing, metrics and the recorder, wired by ``create_app``.
    What it returns (the meter: the priced event) is not the forwarder's business."""

    def __call__(self, event: UsageEvent) -> object: ...


class EventPricer(Protocol):
    """What the meter prices an event with (``proxy.pricing.Pricer`` in the app)."""

    def price(self, event: UsageEvent) -> Cost | None: ...


class Observer(Protocol):
    def observe(self, event: UsageEvent) -> None: ...


class Submitter(Protocol):
    def submit(self, event: UsageEvent) -> None: ...


class Meter:
    """The finish line of every exchange: price it, count it, hand it to the recorder."""

    def __init__(
        self,
        pricer: EventPricer,
        metrics: Observer,
        recorder: Submitter,
        access_log: Callable[[UsageEvent], None] | None = None,
    ) -> None:
        self._pricer = pricer
        self._metrics = metrics
        self._recorder = recorder
        self._access_log = access_log

    def __call__(self, event: UsageEvent) -> UsageEvent:
        """Price ``event``, count and record the priced event, and return it."""
        priced = self.priced(event)
        self._metrics.observe(priced)
        self._recorder.submit(priced)
        if self._access_log is not None:
            self._access_log(priced)
        return priced

    def priced(self, event: UsageEvent) -> UsageEvent:
        """``event`` with its cost, as a new event (``event`` is not changed): $0 without usage,
        unknown (None) for a billed answer that never said its usage (with ``usage_missing``)."""
        facts = event.facts
        usage = facts.usage
        if usage.total_tokens() or usage.web_search_requests or facts.iterations:
            return event.with_cost(self._pricer.price(event))
        if facts.distrusted:
            return event.with_cost(None)
        if facts.metered and not facts.saw_usage and _succeeded(event):
            problems = merged(facts.problems, Problem.USAGE_MISSING)
            return event.with_cost(None, replace(facts, problems=problems))
        return event.with_cost(Cost(Decimal(0), {}, Decimal(0), "no-usage"))


def _succeeded(event: UsageEvent) -> bool:
    """Upstream answered without an error: such an answer is billed, so it carries usage."""
    return (event.http_status or 0) < 400 and event.facts.error_type is None


class AccessLog:
    """Writes ``access_record(event)`` as one JSON line to the ``tokenmeter.access`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("tokenmeter.access")

    def __call__(self, event: UsageEvent) -> None:
        self._log.info(json.dumps(access_record(event), separators=(",", ":")))


def access_record(event: UsageEvent) -> dict[str, Any]:
    """What the access log says about one exchange: no key, prompt or response text."""
    who = event.attribution
    cost = event.cost
    return {
        "ts": event.started_at.isoformat(),
        "event_id": event.event_id,
        "provider": event.provider,
        "method": event.method,
        "path": event.path,
        "status": event.status.value,
        "http_status": event.http_status,
        "model": event.model,
        "stream": event.stream,
        "tokens": event.usage.by_kind(),
        "cost_usd": None if cost is None else str(cost.total),
        "duration_ms": round(event.duration_ms, 1),
        "user": who.user,
        "team": who.team,
        "task": who.task,
        "session": who.session,
        "source": who.source,
        "billing": who.billing,
        "key_fingerprint": who.key_fingerprint,
        "request_id": event.request_id,
    }
