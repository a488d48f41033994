"""How a ``UsageEvent`` becomes a ``usage_events`` row, and how a row survives in the spool.

``event_to_row`` is the only place that decides which event field lands in which column. Rows,
not events, travel through the recorder and the spool, so a spooled line replays into exactly
the row the live path would have written. ``row_to_json``/``json_to_row`` are lossless:
``Decimal`` as a string, datetimes as ISO 8601 with their UTC offset.

``iterations_json``/``iterations_from_json`` own the ``iterations`` column's format: a JSON list
of ``{"type", "model", <token kind>: count, …}`` (kinds with no tokens left out), in the order
the response gave them; ``problems_text``/``problems_from_text`` the ``usage_problem`` column's.

``row_to_line`` is on the hot path (the recorder's write-ahead append, once per exchange): it
encodes with orjson (~1.6 µs a row, against ~12 µs for the standard library's encoder), and
falls back to the standard library only for what orjson refuses (an integer beyond 64 bits).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from proxy.store.aggregates import COST_KIND_COLUMNS
from proxy.store.tables import usage_events
from proxy.store.types import Fixed, UTCDateTime
from proxy.usage import TOKEN_KINDS, Cost, Iteration, Usage, UsageEvent, as_utc

Row = dict[str, Any]

COLUMNS = frozenset(c.name for c in usage_events.columns)
_DECIMAL_COLUMNS = frozenset(c.name for c in usage_events.columns if isinstance(c.type, Fixed))
_TIME_COLUMNS = frozenset(c.name for c in usage_events.columns if isinstance(c.type, UTCDateTime))
_NULLABLE_COLUMNS = frozenset(c.name for c in usage_events.columns if c.nullable)


def _cost_columns(cost: Cost | None) -> Row:
    if cost is None:
        return {
            "cost_usd": None,
            "sticker_usd": None,
            "api_equivalent_usd": None,
            "price_version": None,
            "catalog_model": None,
        }
    return {
        "cost_usd": cost.total,
        "api_equivalent_usd": cost.api_equivalent,
        "sticker_usd": cost.sticker,
        "price_version": cost.price_version,
        "catalog_model": cost.catalog_model,
    }


def _cost_kind_columns(cost: Cost | None) -> Row:
    if cost is None:
        return dict.fromkeys(COST_KIND_COLUMNS.values())
    return {col: cost.by_kind.get(kind, Decimal(0)) for kind, col in COST_KIND_COLUMNS.items()}


def _usage_columns(event: UsageEvent) -> Row:
    usage, facts = event.usage, event.facts
    return {
        "input_tokens": usage.input,
        "cache_write_5m_tokens": usage.cache_write_5m,
        "cache_write_1h_tokens": usage.cache_write_1h,
        "cache_read_tokens": usage.cache_read,
        "output_tokens": usage.output,
        "reasoning_tokens": usage.reasoning,
        "web_search_requests": usage.web_search_requests,
        "model": facts.model,
        "message_id": facts.message_id,
        "error_type": facts.error_type,
        "service_tier": facts.service_tier,
        "inference_geo": facts.inference_geo,
        "speed": facts.speed,
        "stop_reason": facts.stop_reason,
        "usage_problem": problems_text(facts.problems),
        "iterations": iterations_json(facts.iterations),
    }


def problems_text(problems: tuple[str, ...]) -> str | None:
    return ",".join(problems) if problems else None


def problems_from_text(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def iterations_json(iterations: tuple[Iteration, ...]) -> str | None:
    """The ``iterations`` column for an event's iterations (None when it has none)."""
    if not iterations:
        return None
    entries = []
    for it in iterations:
        counts = {kind: n for kind, n in it.usage.by_kind().items() if n}
        entries.append({"type": it.kind, "model": it.model, **counts})
    return json.dumps(entries, separators=(",", ":"))


def iterations_from_json(text: str | None) -> tuple[Iteration, ...]:
    """The iterations ``iterations_json`` wrote."""
    if not text:
        return ()
    return tuple(
        Iteration(
            entry["type"],
            entry["model"],
            Usage(**{kind: int(entry.get(kind, 0)) for kind in TOKEN_KINDS}),
        )
        for entry in json.loads(text)
    )


def _attribution_columns(event: UsageEvent) -> Row:
    who = event.attribution
    return {
        "user": who.user,
        "team": who.team,
        "task": who.task,
        "session": who.session,
        "agent": who.agent,
        "key_fingerprint": who.key_fingerprint,
        "attribution_source": who.source,
        "billing": who.billing,
    }


def _exchange_columns(event: UsageEvent) -> Row:
    return {
        "event_id": event.event_id,
        "ts": as_utc(event.started_at),
        "duration_ms": event.duration_ms,
        "upstream_headers_ms": event.upstream_headers_ms,
        "first_token_ms": event.first_token_ms,
        "provider": event.provider,
        "method": event.method,
        "path": event.path,
        "request_id": event.request_id,
        "status": str(event.status),
        "http_status": event.http_status,
        "stream": event.stream,
    }


def event_to_row(event: UsageEvent) -> Row:
    """Every column of ``usage_events`` for one event."""
    return {
        **_exchange_columns(event),
        **_attribution_columns(event),
        **_usage_columns(event),
        **_cost_columns(event.cost),
        **_cost_kind_columns(event.cost),
    }


def missing_columns(row: Row) -> list[str]:
    """The ``usage_events`` columns a row read back from a file lacks (it cannot be written)."""
    return sorted(COLUMNS.difference(row))


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool a {type(value).__name__}")


def row_to_line(row: Row) -> bytes:
    """One spool line, newline included: the row with Decimals as strings, datetimes as ISO."""
    try:
        return orjson.dumps(row, default=_encode, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # an integer orjson cannot hold: same JSON, slower encoder
        return (json.dumps(row, default=_encode, separators=(",", ":")) + "\n").encode()


def row_to_json(row: Row) -> str:
    """One spool line as text (no newline)."""
    return row_to_line(row)[:-1].decode()


def json_to_row(line: str | bytes) -> Row:
    """The row ``row_to_line`` was given, with its Decimals and aware datetimes restored; a line
    spooled by an older version gets NULL in the (nullable) columns added since. The standard
    library's parser, off the hot path: orjson would read an integer beyond 64 bits as a float."""
    row: Row = json.loads(line)
    for name in _NULLABLE_COLUMNS.difference(row):
        row[name] = None
    for name in _DECIMAL_COLUMNS.intersection(row):
        if row[name] is not None:
            row[name] = Decimal(row[name])
    for name in _TIME_COLUMNS.intersection(row):
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return row
