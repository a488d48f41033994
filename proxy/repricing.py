"""Recompute stored costs with today's prices after a price fix, and keep the rollup in step.

``reprice(engine, pricer, since)`` walks ``usage_events`` from ``since`` in batches (keyset on
``ts, event_id``). For each event with usage it rebuilds what pricing needs (provider, model,
tokens, what was served, the request time, the stop reason, the per-model ``iterations`` and
the usage problems) and prices it with ``pricer``, exactly as the live path does (events
without usage keep what they were recorded with: the "no-usage" $0, or unknown). Events whose
cost columns or ``price_version`` differ are updated, and in the same transaction the rollup
rows of their hours and days (``usage_hourly`` and ``usage_daily``) and of their task keys'
days and months (``task_daily``, ``task_monthly``) and session keys' days (``session_daily``)
get the difference (new − old) added with the same upserts the recorder uses, so every rollup
always equals the sum of raw events and a running proxy may keep writing meanwhile. Running it
twice changes nothing the second time. ``dry_run`` computes the same before/after totals,
writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.pricing import Pricer
from proxy.store.aggregates import (
    COST_COLUMNS,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    SESSION_DAILY_KEY,
    TASK_DAILY_KEY,
    TOKEN_KIND_COLUMNS,
    sums_reading,
)
from proxy.store.rollup import (
    rollup_deltas,
    session_deltas,
    task_deltas,
    upsert_rollups,
    upsert_session_rollup,
    upsert_task_rollups,
)
from proxy.store.rows import Row, event_to_row, iterations_from_json, problems_from_text
from proxy.store.tables import usage_events
from proxy.usage import Attribution, ResponseFacts, Status, Usage, UsageEvent

BATCH_SIZE = 1000
_PRICED_COLUMNS = (*COST_COLUMNS, "price_version", "catalog_model")
_CHANGED_SUMS = sums_reading(_PRICED_COLUMNS)


@dataclass(slots=True)
class Side:
    """Dollars and unpriced events on one side of a reprice (before or after)."""

    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0

    def count(self, row: Row) -> None:
        if row["cost_usd"] is None:
            self.unpriced += 1
        else:
            self.cost_usd += row["cost_usd"]


@dataclass(slots=True)
class RepriceResult:
    since: datetime
    dry_run: bool
    events: int = 0
    changed: int = 0  # rows rewritten: cost, breakdown or price version differ
    cost_changed: int = 0  # of those, rows whose total cost differs
    before: Side = field(default_factory=Side)
    after: Side = field(default_factory=Side)
    by_model: dict[str, tuple[Side, Side]] = field(default_factory=dict)

    def count(self, old: Row, new: Row) -> None:
        """Count one event, before and after, overall and for its model."""
        self.events += 1
        self.changed += new is not old
        self.cost_changed += new["cost_usd"] != old["cost_usd"]
        before, after = self.by_model.setdefault(old["model"] or "(none)", (Side(), Side()))
        for side, row in ((self.before, old), (self.after, new), (before, old), (after, new)):
            side.count(row)


async def reprice(
    engine: AsyncEngine,
    pricer: Pricer,
    since: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> RepriceResult:
    """Reprice every event at or after ``since``; see the module docstring."""
    result = RepriceResult(since, dry_run)
    after: tuple[datetime, str] | None = None
    while True:
        async with engine.begin() as conn:
            rows = await _batch(conn, since, after, batch_size)
            if not rows:
                return result
            changed = _repriced(rows, pricer, result)
            if changed and not dry_run:
                await _write(conn, changed)
        after = (rows[-1]["ts"], rows[-1]["event_id"])


async def _batch(
    conn: AsyncConnection, since: datetime, after: tuple[datetime, str] | None, size: int
) -> list[Row]:
    c = usage_events.c
    query = sa.select(usage_events).where(c.ts >= since).order_by(c.ts, c.event_id).limit(size)
    if after is not None:
        query = query.where(sa.tuple_(c.ts, c.event_id) > sa.tuple_(*after))
    return [dict(row) for row in (await conn.execute(query)).mappings()]


def _repriced(rows: Sequence[Row], pricer: Pricer, result: RepriceResult) -> list[tuple[Row, Row]]:
    """(old, new) for each row whose priced columns change; counts every row into ``result``."""
    changed = []
    for old in rows:
        new = _priced(old, pricer)
        if any(new[name] != old[name] for name in _PRICED_COLUMNS):
            changed.append((old, new))
        else:
            new = old
        result.count(old, new)
    return changed


def _priced(row: Row, pricer: Pricer) -> Row:
    event = _event(row)
    usage = event.usage
    if not (usage.total_tokens() or usage.web_search_requests or event.facts.iterations):
        return row  # the live path records these without pricing ($0 or unknown); so do we
    event.cost = pricer.price(event)
    priced = event_to_row(event)
    return {**row, **{name: priced[name] for name in _PRICED_COLUMNS}}


def _event(row: Row) -> UsageEvent:
    usage = Usage(
        **{kind: row[column] for kind, column in TOKEN_KIND_COLUMNS.items()},
        web_search_requests=row["web_search_requests"],
        reasoning=row["reasoning_tokens"],
    )
    facts = ResponseFacts(
        usage=usage,
        model=row["model"],
        service_tier=row["service_tier"],
        inference_geo=row["inference_geo"],
        speed=row["speed"],
        stop_reason=row["stop_reason"],
        iterations=iterations_from_json(row["iterations"]),
        problems=problems_from_text(row["usage_problem"]),
    )
    return UsageEvent(
        provider=row["provider"],
        method=row["method"],
        path=row["path"],
        started_at=row["ts"],
        attribution=Attribution(billing=row["billing"] or "unknown"),
        facts=facts,
        status=Status(row["status"]),
        http_status=row["http_status"],
        stream=row["stream"],
        duration_ms=row["duration_ms"],
        event_id=row["event_id"],
    )


async def _write(conn: AsyncConnection, changed: Sequence[tuple[Row, Row]]) -> None:
    c = usage_events.c
    update = (
        sa.update(usage_events)
        .where(c.event_id == sa.bindparam("b_event_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in _PRICED_COLUMNS})
    )
    params = [
        {"b_event_id": new["event_id"], **{f"b_{n}": new[n] for n in _PRICED_COLUMNS}}
        for _, new in changed
    ]
    await conn.execute(update, params)
    await _shift_rollup(conn, [old for old, _ in changed], [new for _, new in changed])


async def _shift_rollup(conn: AsyncConnection, old: Sequence[Row], new: Sequence[Row]) -> None:
    """Add (new − old) sums to each affected hourly, daily, task and session rollup row."""
    deltas = _differences(rollup_deltas(old), rollup_deltas(new), ROLLUP_KEY)
    await upsert_rollups(conn, deltas, _CHANGED_SUMS)
    by_task = _differences(task_deltas(old), task_deltas(new), TASK_DAILY_KEY)
    await upsert_task_rollups(conn, by_task, _CHANGED_SUMS)
    by_session = _differences(session_deltas(old), session_deltas(new), SESSION_DAILY_KEY)
    await upsert_session_rollup(conn, by_session, _CHANGED_SUMS)


def _differences(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key_names: Sequence[str]
) -> list[dict[str, Any]]:
    """``new`` with each changed sum less ``old``'s (same keys: repricing moves no event);
    every other column (unchanged sums, first and last times) as ``new`` has it."""

    def key(sums: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(sums[name] for name in key_names)

    before = {key(sums): sums for sums in old}
    out = []
    for sums in new:
        was = before[key(sums)]
        delta = sums | dict.fromkeys(ROLLUP_SUMS, 0)
        delta |= {name: sums[name] - was[name] for name in _CHANGED_SUMS}
        out.append(delta)
    return out
