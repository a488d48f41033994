"""The value types every other module speaks: token counts, who is paying, one metered exchange.

This module owns the vocabulary. Token kinds are named the same way in tables, metrics, the API
and dashboards: ``input`` (uncached input), ``cache_write_5m``, ``cache_write_1h``,
``cache_read``, ``output``. Counted extras with their own prices (``web_search_requests``) live
beside them; ``COST_KINDS`` are the kinds a ``Cost`` breaks dollars into (the token kinds plus
``web_search``). ``as_utc`` is how every module reads a time: a naive one is UTC. Nothing here
does I/O; everything here is cheap to build on the hot path.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

TOKEN_KINDS: tuple[str, ...] = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
INPUT_KINDS: tuple[str, ...] = TOKEN_KINDS[:4]
WEB_SEARCH = "web_search"  # priced per search, not per token
COST_KINDS: tuple[str, ...] = (*TOKEN_KINDS, WEB_SEARCH)  # the keys of ``Cost.by_kind``

# What one response may report per kind before the number is taken as absurd: above it the value
# is capped and the event flagged (``USAGE_OVER_CAP``), so no upstream answer can overflow a
# column or a rollup. No real response comes near either (context windows are ~10^6 tokens).
TOKEN_CAP = 10**12
REQUEST_CAP = 10**6  # counted extras priced per unit (web searches: 10^6 of them = $10,000)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is taken as UTC (never as the machine's local time).
    ``ValueError`` when the instant has no UTC form within years 1-9999."""
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside years 1-9999 in UTC") from None


class Problem(StrEnum):
    """What a usage tap (or the meter) met that makes an event's numbers less than certain.

    Stored per event (``usage_events.usage_problem``) and counted in
    ``tokenmeter_usage_problems_total``; a fixed vocabulary, so a bounded metric label.
    """

    UNDECODABLE_BODY = "undecodable_body"  # unsupported or corrupt content coding
    OVERSIZED_BODY = "oversized_body"  # a JSON body past the tap's cap
    OVERSIZED_EVENT = "oversized_event"  # an SSE event past the decoder's cap
    UNPARSEABLE = "unparseable"  # a body or event that is not the JSON it should be
    USAGE_MISSING = "usage_missing"  # a metered success without any usage (cut, no usage chunk)
    USAGE_NEGATIVE = "usage_negative"  # recorded as 0
    USAGE_NOT_INTEGER = "usage_not_integer"  # a fraction (truncated) or not a number (ignored)
    USAGE_OVER_CAP = "usage_over_cap"  # recorded as TOKEN_CAP / REQUEST_CAP
    BAD_ITERATIONS = "bad_iterations"  # ``usage.iterations`` that cannot be read


# An event with one of these was recorded with numbers the response did not say, or without
# numbers it did say: its dollars are unknown (cost NULL), never a guess.
DISTRUSTED: frozenset[str] = frozenset(
    {
        Problem.USAGE_NEGATIVE,
        Problem.USAGE_NOT_INTEGER,
        Problem.USAGE_OVER_CAP,
        Problem.BAD_ITERATIONS,
    }
)

# Iteration kinds of Anthropic's ``usage.iterations`` (its compaction, advisor and fallback pages).
MESSAGE = "message"  # a sampling step of the executor, or a hop that declined (fallback)
COMPACTION = "compaction"  # summarising the context; not in the top-level counts
ADVISOR = "advisor_message"  # the advisor tool's sub-inference, at the advisor model's rates
FALLBACK = "fallback_message"  # the fallback model's attempt that served the response
REFUSAL = "refusal"  # the ``stop_reason`` of a declined request


class Status(StrEnum):
    """How an exchange ended, as recorded in ``usage_events.status``."""

    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"  # upstream answered 4xx/5xx, or an SSE `error` event
    CLIENT_DISCONNECTED = "client_disconnected"  # our client hung up before the end
    UPSTREAM_UNREACHABLE = "upstream_unreachable"  # connect error or timeout: we answered 502/504
    INCOMPLETE = "incomplete"  # upstream closed the stream before its final event
    REJECTED = "rejected"  # the proxy refused the request itself (overload)


@dataclass(slots=True)
class Usage:
    """Token counts of one exchange, by kind. Anthropic semantics: ``input`` excludes cache."""

    input: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output: int = 0
    web_search_requests: int = 0
    reasoning: int = 0  # part of ``output``; observability only, never priced twice

    def total_tokens(self) -> int:
        """All five token kinds: the denominator of blended $/MTok."""
        return (
            self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read + self.output
        )

    def total_input(self) -> int:
        return self.input + self.cache_write_5m + self.cache_write_1h + self.cache_read

    def by_kind(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in TOKEN_KINDS}


def summed(parts: Iterable[Usage], extras: Usage) -> Usage:
    """The token kinds of ``parts`` added up (each at most ``TOKEN_CAP``), with the counted
    extras (web searches, reasoning) of ``extras``: how an answer's ``usage.iterations`` become
    one event's tokens."""
    totals = dict.fromkeys(TOKEN_KINDS, 0)
    for part in parts:
        for kind in TOKEN_KINDS:
            totals[kind] += getattr(part, kind)
    capped = {kind: min(n, TOKEN_CAP) for kind, n in totals.items()}
    return Usage(
        **capped, web_search_requests=extras.web_search_requests, reasoning=extras.reasoning
    )


def merged(problems: Iterable[str], *more: str) -> tuple[str, ...]:
    """``problems`` and ``more``, sorted, each once: the form ``ResponseFacts.problems`` keeps."""
    return tuple(sorted({*problems, *more}))


@dataclass(frozen=True, slots=True)
class Iteration:
    """One entry of Anthropic's ``usage.iterations``: a sampling step and the model that ran it.

    ``model`` None: the response's own model (compaction entries, and executor entries of
    responses that do not name it)."""

    kind: str
    model: str | None
    usage: Usage


@dataclass(slots=True)
class ResponseFacts:
    """What a provider's response said about itself, as read by a usage tap."""

    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    message_id: str | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    speed: str | None = None
    stop_reason: str | None = None
    error_type: str | None = None  # `error.type` of an error body or SSE error event
    saw_usage: bool = False  # any usage object was read
    complete: bool = False  # the final event (or a whole JSON body) was read
    metered: bool = False  # read by a usage tap (the path's answers carry usage)
    iterations: tuple[Iteration, ...] = ()  # Anthropic's per-step usage, when the answer had it
    problems: tuple[str, ...] = ()  # ``Problem`` values, sorted, each once

    def with_usage(self, usage: Usage) -> ResponseFacts:
        """A copy with ``usage`` in place of this one's: ``dataclasses.replace(self, usage=...)``
        at a fifth of its cost (a tap's ``result()`` runs once per exchange). A new field must
        be added here too; ``test_with_usage_copies_every_field`` fails until it is."""
        return ResponseFacts(
            usage=usage,
            model=self.model,
            message_id=self.message_id,
            service_tier=self.service_tier,
            inference_geo=self.inference_geo,
            speed=self.speed,
            stop_reason=self.stop_reason,
            error_type=self.error_type,
            saw_usage=self.saw_usage,
            complete=self.complete,
            metered=self.metered,
            iterations=self.iterations,
            problems=self.problems,
        )

    @property
    def distrusted(self) -> bool:
        """Whether a problem makes this response's dollars unknown (see ``DISTRUSTED``)."""
        return not DISTRUSTED.isdisjoint(self.problems)


BACKFILL_SOURCE = "backfill"  # the source of events read from Claude Code's transcripts


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who an exchange is billed to, and which source decided it (strongest source first)."""

    user: str | None = None
    team: str | None = None
    task: str | None = None
    session: str | None = None
    agent: str | None = None
    key_fingerprint: str | None = None  # of a subscription's OAuth token: the seat's id
    source: str = "none"  # proxy_key | header | path | key_map | client | none | backfill
    billing: str = "unknown"  # ``proxy.billing.Billing``: api_key | subscription | unknown


@dataclass(slots=True)
class Cost:
    """The dollars of one exchange, by kind, and the price versions that made them."""

    total: Decimal
    by_kind: dict[str, Decimal]  # by ``COST_KINDS`` kind; a kind left out cost $0
    sticker: Decimal  # the same tokens at list input/output price with no caching
    price_version: str  # e.g. "genai-prices 0.2.3+overlay 2026-11-26+overrides 3f2a…"
    catalog_model: str | None = None  # the catalog's id for the model that priced it
    # A subscription (seat) exchange: paid per token nothing (``total`` and every kind 0), and
    # this is what the same tokens cost at list price: never added to ``total``.
    api_equivalent: Decimal | None = None


@dataclass(frozen=True, slots=True)
class QuotaReading:
    """One window of a subscription's plan limit, as a response's unified rate-limit headers
    said it (``proxy.quota``): how much of the window is used (0..1), when it resets (Unix
    seconds), and its status (``allowed``, ``allowed_warning``, ``rejected``)."""

    window: str  # one of ``proxy.quota.WINDOWS``: a bounded metric label
    utilization: float | None = None
    reset_at: float | None = None
    status: str | None = None


class _EventIds:
    """A random 64-bit prefix per process and a counter. Renewed in a forked child (so workers
    never share a prefix) by a fork hook, not by checking the pid per event: getpid() is a system
    call with today's glibc, and so is uuid4's urandom."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = f"{secrets.randbits(64):016x}"
        self.counter: Iterator[int] = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_ids = _EventIds()


def new_event_id() -> str:
    """32 hex digits, unique across processes and replicas (see ``_EventIds``)."""
    return _ids.next()


@dataclass(slots=True)
class UsageEvent:
    """Exactly one per proxied exchange, built by ``forward`` when the exchange ends."""

    provider: str
    method: str
    path: str
    started_at: datetime
    attribution: Attribution
    facts: ResponseFacts
    status: Status
    http_status: int | None
    stream: bool
    duration_ms: float
    upstream_headers_ms: float | None = None  # time until upstream's response headers
    first_token_ms: float | None = None  # time until the first body chunk of a stream
    added_ms: float | None = None  # the proxy's own time on the request and the response head
    request_id: str | None = None  # upstream's `request-id` header
    cost: Cost | None = None
    event_id: str = field(default_factory=new_event_id)
    quota: tuple[QuotaReading, ...] = ()  # a seat's plan limits, from the response headers

    @property
    def usage(self) -> Usage:
        return self.facts.usage

    def with_cost(self, cost: Cost | None, facts: ResponseFacts | None = None) -> UsageEvent:
        """A copy with ``cost`` (and ``facts`` if given): how the meter prices an event without
        changing the one it was handed. Positional arguments, a third of the keywords' cost on
        every exchange; ``test_with_cost_copies_every_field`` fails when a field is missed."""
        return UsageEvent(
            self.provider,
            self.method,
            self.path,
            self.started_at,
            self.attribution,
            self.facts if facts is None else facts,
            self.status,
            self.http_status,
            self.stream,
            self.duration_ms,
            self.upstream_headers_ms,
            self.first_token_ms,
            self.added_ms,
            self.request_id,
            cost,
            self.event_id,
            self.quota,
        )

    @property
    def model(self) -> str | None:
        return self.facts.model
