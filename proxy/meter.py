"""The finish line of every exchange: price it, count it, hand it to the recorder.

``Meter`` is the ``Sink`` the forwarder calls once per exchange, synchronously and without I/O:
pricing is a pure function, metrics are in-process counters, and ``recorder.submit`` only
enqueues. An exchange with no usage (count_tokens, models, most errors) costs exactly $0;
usage on a model with no price gets cost ``None`` (unknown), never $0.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from proxy.usage import Cost, UsageEvent


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
        usage = event.usage
        if usage.total_tokens() or usage.web_search_requests:
            event.cost = self._pricer.price(event)
        else:
            event.cost = Cost(Decimal(0), {}, Decimal(0), "no-usage")
        self._metrics.observe(event)
        self._recorder.submit(event)
