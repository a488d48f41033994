"""The one place tests (and the benches) build ``UsageEvent``s.

``make_event(**overrides)`` is a priced Anthropic streaming exchange by ada of team core
(Sonnet 4.5, ``sample_usage()``, priced at ``sample_cost()``) in which every part can be set by
keyword, whichever object it lives on:
- the exchange: any ``UsageEvent`` field (``provider``, ``started_at``, ``status``,
  ``duration_ms``, ``event_id``…); ``http_status`` defaults to 200 for ``Status.OK``, else 529;
- what the response said: any ``ResponseFacts`` field (``model``, ``usage``, ``service_tier``,
  ``iterations``, ``problems``…), or a whole ``facts=``;
- who pays: any ``Attribution`` field (``user``, ``team``, ``task``, ``session``, ``agent``,
  ``key_fingerprint``, ``source``), or a whole ``attribution=``;
- the price: ``cost=`` a ``Cost``, or ``priced=False`` for an unknown price (cost None).
``bench_user(n, rng)`` gives the attribution keywords of the ``n``-th of the benches' many
Claude Code users.

Imports nothing but ``proxy`` and the standard library, so the benches may use it without the
test extra installed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from proxy.usage import Attribution, Cost, ResponseFacts, Status, Usage, UsageEvent

SAMPLE_TIME = datetime(2026, 11, 26, 14, 5, 7, 123456, tzinfo=UTC)
_FACTS = frozenset(f.name for f in fields(ResponseFacts))
_WHO = frozenset(f.name for f in fields(Attribution))
_DEFAULT_FACTS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "message_id": "msg_01",
    "saw_usage": True,
}
_DEFAULT_WHO: dict[str, Any] = {
    "user": "ada",
    "team": "core",
    "task": "T-1",
    "session": "s-1",
    "source": "header",
}
_DEFAULT_EXCHANGE: dict[str, Any] = {
    "provider": "anthropic",
    "method": "POST",
    "path": "/v1/messages",
    "started_at": SAMPLE_TIME,
    "status": Status.OK,
    "stream": True,
    "duration_ms": 812.5,
    "upstream_headers_ms": 95.25,
    "first_token_ms": 301.0,
    "request_id": "req_01",
}


def sample_usage() -> Usage:
    """A small cached turn with one web search: 32,570 tokens of the five kinds."""
    return Usage(
        input=120, cache_write_5m=2000, cache_read=30_000, output=450, web_search_requests=1
    )


def sample_cost() -> Cost:
    """Sonnet list prices for ``sample_usage()``, to the cent of a micro-dollar."""
    by_kind = {
        "input": Decimal("0.000360"),
        "cache_write_5m": Decimal("0.007500"),
        "cache_write_1h": Decimal("0"),
        "cache_read": Decimal("0.009000"),
        "output": Decimal("0.006750"),
        "web_search": Decimal("0.010"),
    }
    return Cost(
        total=sum(by_kind.values(), Decimal(0)),
        by_kind=by_kind,
        sticker=Decimal("0.112110"),
        price_version="genai-prices 0.2.3",
        catalog_model="claude-sonnet-4-5",
    )


def bench_user(n: int, rng: random.Random, teams: int = 30) -> dict[str, Any]:
    """``user-0042`` of ``team-12`` (``n`` modulo ``teams``), working in Claude Code on one of
    20 tasks (drawn from ``rng``) in one session: attribution keywords for ``make_event``."""
    return {
        "user": f"user-{n:04d}",
        "team": f"team-{n % teams:02d}",
        "task": f"T-{n}-{rng.randrange(20)}",
        "session": f"s-{n}",
        "agent": "claude-code",
    }


def make_event(
    *,
    priced: bool = True,
    cost: Cost | None = None,
    facts: ResponseFacts | None = None,
    attribution: Attribution | None = None,
    **overrides: Any,
) -> UsageEvent:
    """A realistic exchange with ``overrides`` applied (module doc)."""
    said = {k: overrides.pop(k) for k in _FACTS.intersection(overrides)}
    who = {k: overrides.pop(k) for k in _WHO.intersection(overrides)}
    if facts is None:
        facts = ResponseFacts(**{"usage": sample_usage(), **_DEFAULT_FACTS, **said})
    elif said:
        raise TypeError(f"give facts= or {sorted(said)}, not both")
    if attribution is None:
        attribution = Attribution(**{**_DEFAULT_WHO, **who})
    elif who:
        raise TypeError(f"give attribution= or {sorted(who)}, not both")
    exchange = {**_DEFAULT_EXCHANGE, **overrides}
    exchange.setdefault("http_status", 200 if exchange["status"] is Status.OK else 529)
    return UsageEvent(
        facts=facts,
        attribution=attribution,
        cost=cost or (sample_cost() if priced else None),
        **exchange,
    )


WORK_START = datetime(2026, 10, 25, tzinfo=UTC)  # ten days over a month's end
WORK_MODELS = ("claude-sonnet-4-5", "claude-opus-4-5")
Work = tuple[str | None, str | None]  # (task, session) of an event


def work_events(work: Sequence[Work], n: int, seed: int) -> list[UsageEvent]:
    """``n`` events spread over the ten days from ``WORK_START``: users ada, bob or none, team
    core or none, one of ``WORK_MODELS``, a (task, session) pair from ``work``, 5 % upstream
    errors and 5 % unpriced, the same for the same ``seed`` (the rollup tests' traffic)."""
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        at = WORK_START + timedelta(minutes=rng.randrange(10 * 24 * 60), seconds=rng.random() * 59)
        task, session = rng.choice(work)
        events.append(
            make_event(
                started_at=at,
                user=rng.choice(("ada", "bob", None)),
                team=rng.choice(("core", None)),
                model=rng.choice(WORK_MODELS),
                task=task,
                session=session,
                status=Status.UPSTREAM_ERROR if rng.random() < 0.05 else Status.OK,
                priced=rng.random() > 0.05,
            )
        )
    return events
