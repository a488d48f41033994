"""Does it match the bill? The proxy's tokens and dollars beside the providers' own reports.

One row per UTC day × provider (``vendor``: anthropic, openai) × model over whole UTC days from
the start's day: on the proxy's side that provider's events of the rollups
(``usage.window_source``, the same sums every report reads), on the provider's side the newest
stored snapshot of each of its reports for that day (``store.snapshots``: pages are never
edited, a later fetch wins). Not per API key: the proxy knows keys by salted fingerprint, the
Admin APIs by key id, so no row has both (the provider's rows add up across keys and projects).
Both sides count tokens in the same five kinds: OpenAI's ``input_tokens`` include cached and
cache-write tokens on both sides, and both take them out of ``input`` the same way
(``providers.openai``, ``providers.openai_admin``).

Each row: tokens by kind on each side; dollars on each side (token costs only: the cost report
has web search, code execution and session costs without a model, so they are totalled apart);
the differences (proxy − provider) and their percentage of the provider's figure; a verdict:

- ``match``: total tokens within ``TOKEN_TOLERANCE`` (0.1 %) of the provider's, and dollars
  (when both are known) within ``DOLLAR_TOLERANCE`` (0.5 %) or ``DOLLAR_FLOOR`` ($0.01: the
  report's cents and the proxy's micro-dollars round differently);
- ``proxy_low``: the provider counted more (traffic around the proxy, before it, or not yet
  recorded); ``proxy_high``: the proxy counted more (a counting or pricing bug, or a discount
  the proxy doesn't know). Tokens decide first; dollars only when the tokens match.

Dollars: the proxy's are what it recorded, at the company's prices (``TOKENMETER_PRICES_FILE``
overrides and discounts; a row priced by one says so), never re-priced here; the provider's are
its cost report's token lines for the model (Anthropic's by description, OpenAI's by line item
``"<model>, input|cached input|output"``). They are not compared, and the row says why, when the
provider's figure leaves something out (Priority Tier usage is not in Anthropic's cost report)
or the proxy has requests without a price. Coverage: the
share of provider-reported tokens the proxy saw, Σ min(proxy, provider) / Σ provider.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.pricing import load_overrides
from proxy.providers.admin import (
    COST,
    PRIORITY_TIERS,
    TOKENS,
    USAGE,
    CostLine,
    PageError,
    UsageLine,
)
from proxy.providers.billing import read_page
from proxy.reports.totals import money, ratio, sum_columns, totals_of
from proxy.reports.usage import window_source
from proxy.reports.window import Filters
from proxy.store.aggregates import DAY_LABEL_SQL, bucket, day_of
from proxy.store.snapshots import StoredPage, pages_over
from proxy.usage import TOKEN_KINDS

PROVIDERS = ("anthropic", "openai")
TOKEN_TOLERANCE = Decimal("0.001")
DOLLAR_TOLERANCE = Decimal("0.005")
DOLLAR_FLOOR = Decimal("0.01")
MATCH, PROXY_LOW, PROXY_HIGH = "match", "proxy_low", "proxy_high"
VERDICTS = (MATCH, PROXY_LOW, PROXY_HIGH)
Overridden = Callable[[str, str, date], bool]  # (provider, model, day)


def _no_tokens() -> dict[str, int]:
    return dict.fromkeys(TOKEN_KINDS, 0)


@dataclass(slots=True)
class Side:
    """One side's figures for a row: tokens by kind and token dollars (None: unknown)."""

    tokens: dict[str, int] = field(default_factory=_no_tokens)
    usd: Decimal | None = None
    seen: bool = False

    @property
    def total(self) -> int:
        return sum(self.tokens.values())

    def as_json(self) -> dict[str, Any]:
        usd = None if self.usd is None else money(self.usd)
        return {"tokens": dict(self.tokens), "total_tokens": self.total, "usd": usd}


@dataclass(slots=True)
class Row:
    """One day × provider × model (or the totals): both sides, differences, the verdict."""

    day: str
    model: str
    vendor: str = ""  # whose traffic and reports: "anthropic" or "openai"
    proxy: Side = field(default_factory=Side)
    provider: Side = field(default_factory=Side)
    unpriced_requests: int = 0  # proxy requests without a price
    priority_tokens: int = 0  # provider tokens on Priority Tier (not in the cost report)
    override: bool = False  # the proxy's dollars are at the company's price
    notes: list[str] = field(default_factory=list)

    @property
    def token_diff(self) -> int:
        return self.proxy.total - self.provider.total

    @property
    def usd_diff(self) -> Decimal | None:
        proxy, provider = self.proxy.usd, self.provider.usd
        if proxy is None or provider is None or not self.dollars_compared:
            return None
        return proxy - provider

    @property
    def dollars_compared(self) -> bool:
        return (
            self.proxy.usd is not None
            and self.provider.usd is not None
            and not self.unpriced_requests
            and not self.priority_tokens
        )

    @property
    def verdict(self) -> str:
        allowed = Decimal(self.provider.total) * TOKEN_TOLERANCE
        if abs(self.token_diff) > allowed:
            return PROXY_LOW if self.token_diff < 0 else PROXY_HIGH
        diff = self.usd_diff
        if diff is None or self.provider.usd is None:
            return MATCH
        if abs(diff) > max(DOLLAR_FLOOR, abs(self.provider.usd) * DOLLAR_TOLERANCE):
            return PROXY_LOW if diff < 0 else PROXY_HIGH
        return MATCH

    def explain(self) -> list[str]:
        """Why a row's figures are what they are, in words (the notes of its JSON)."""
        notes = list(self.notes)
        if not self.proxy.seen:
            notes.append("not seen by the proxy (traffic around it or before it, or backfilled)")
        if not self.provider.seen:
            notes.append("not in the provider's stored usage report (fetch again, or another org)")
        elif self.provider.usd is None:
            notes.append("no cost lines for it in the stored cost report: dollars not compared")
        if self.priority_tokens:
            notes.append(
                f"{self.priority_tokens:,} tokens on Priority Tier, which the provider's cost "
                "report excludes: dollars not compared"
            )
        if self.unpriced_requests:
            notes.append(
                f"{self.unpriced_requests:,} proxy requests without a known price: "
                "dollars not compared"
            )
        if self.override:
            notes.append("proxy dollars at the company's price override or discount")
        return notes

    def as_json(self) -> dict[str, Any]:
        diff = self.usd_diff
        return {
            "day": self.day,
            "vendor": self.vendor,
            "model": self.model,
            "proxy": self.proxy.as_json(),
            "provider": self.provider.as_json(),
            "token_diff": self.token_diff,
            "token_diff_pct": _pct(self.token_diff, self.provider.total),
            "usd_diff": None if diff is None else money(diff),
            "usd_diff_pct": None if diff is None else _pct(diff, self.provider.usd or 0),
            "verdict": self.verdict,
            "notes": self.explain(),
        }


def _pct(diff: Decimal | int, base: Decimal | int) -> str | None:
    share = ratio(Decimal(diff) * 100, base)
    return None if share is None else str(share.quantize(Decimal("0.01")))


@dataclass(slots=True)
class Reconciliation:
    """The rows, their totals and coverage, and the provider costs not per model."""

    start: datetime
    end: datetime
    rows: list[Row]
    snapshots: dict[str, dict[str, datetime | None]]  # newest fetch used, per provider, report
    other_costs: dict[str, Decimal]  # provider dollars without a model, by cost_type
    proxy_web_search_usd: Decimal

    @property
    def total(self) -> Row:
        total = Row("(total)", "")
        proxy_usd, provider_usd = Decimal(0), Decimal(0)
        compared = [row for row in self.rows if row.dollars_compared]
        for row in self.rows:
            for kind in TOKEN_KINDS:
                total.proxy.tokens[kind] += row.proxy.tokens[kind]
                total.provider.tokens[kind] += row.provider.tokens[kind]
        for row in compared:
            proxy_usd += row.proxy.usd or 0
            provider_usd += row.provider.usd or 0
        total.proxy.usd, total.provider.usd = proxy_usd, provider_usd
        total.proxy.seen = total.provider.seen = True
        if len(compared) < len(self.rows):
            total.notes.append(
                f"dollars over the {len(compared)} of {len(self.rows)} rows compared in dollars"
            )
        return total

    @property
    def coverage(self) -> Decimal | None:
        seen = sum(min(row.proxy.total, row.provider.total) for row in self.rows)
        return ratio(seen, sum(row.provider.total for row in self.rows))

    def verdicts(self) -> dict[str, int]:
        counts = Counter(row.verdict for row in self.rows)
        return {name: counts[name] for name in VERDICTS}

    def as_json(self) -> dict[str, Any]:
        fetched = {
            vendor: {k: None if v is None else v.isoformat() for k, v in used.items()}
            for vendor, used in self.snapshots.items()
        }
        coverage = self.coverage
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "providers": list(self.snapshots),
            "snapshots": fetched,
            "tolerance": {
                "tokens": str(TOKEN_TOLERANCE),
                "usd": str(DOLLAR_TOLERANCE),
                "usd_floor": str(DOLLAR_FLOOR),
            },
            "rows": [row.as_json() for row in self.rows],
            "total": self.total.as_json(),
            "coverage": None if coverage is None else str(coverage),
            "verdicts": self.verdicts(),
            "other_costs": {
                "provider_usd": {k: money(v) for k, v in sorted(self.other_costs.items())},
                "proxy_web_search_usd": money(self.proxy_web_search_usd),
                "note": "provider costs without a model (web search, code execution, sessions;"
                " OpenAI line items other than a model's input, cached input or output) are not"
                " in the rows; the proxy meters web search, not code execution",
            },
        }

    def flat_rows(self) -> list[dict[str, Any]]:
        """Rows for CSV: one per day × model, then the total."""
        return [row.as_json() for row in [*self.rows, self.total]]


async def company_prices(path: Path | None) -> Overridden | None:
    """Whether the company's price overrides (``TOKENMETER_PRICES_FILE``) touch a model on a
    day, for the rows' notes; None without a file. Read off the event loop."""
    if path is None:
        return None
    overrides = await asyncio.to_thread(load_overrides, path)
    return overrides.applies_to


async def reconcile(
    engine: AsyncEngine,
    start: datetime,
    end: datetime,
    overridden: Overridden | None = None,
    providers: tuple[str, ...] = PROVIDERS,
) -> Reconciliation:
    """Proxy vs provider from the UTC day of ``start`` to ``end`` (module doc)."""
    start = day_of(start)
    rows: dict[tuple[str, str, str], Row] = {}

    def row(day: str, vendor: str, model: str) -> Row:
        return rows.setdefault((day, vendor, model), Row(day, model, vendor))

    web_search = await _proxy_side(engine, Filters(start, end), row, providers)
    other: dict[str, Decimal] = defaultdict(Decimal)
    snapshots = {}
    for vendor in providers:
        chosen, snapshots[vendor] = _newest(
            await pages_over(engine, vendor, start, end), start, end
        )
        for line in chosen:
            day = line.starting_at.date().isoformat()
            if isinstance(line, UsageLine):
                _add_usage(row(day, vendor, line.model or ""), line)
            elif line.cost_type == TOKENS and line.model is not None:
                target = row(day, vendor, line.model)
                target.provider.usd = (target.provider.usd or Decimal(0)) + line.amount_usd
            else:
                other[line.cost_type or "other"] += line.amount_usd
    for found in rows.values():
        found.override = overridden is not None and overridden(
            found.vendor, found.model, date.fromisoformat(found.day)
        )
    ordered = [rows[key] for key in sorted(rows)]
    return Reconciliation(start, end, ordered, snapshots, dict(other), web_search)


async def _proxy_side(
    engine: AsyncEngine,
    f: Filters,
    row: Callable[[str, str, str], Row],
    providers: tuple[str, ...],
) -> Decimal:
    """Put the proxy's sums per day × provider × model in their rows; its web search dollars."""
    source = window_source(f, engine.dialect.name)
    day: sa.ColumnElement[str] = sa.literal_column(
        bucket(DAY_LABEL_SQL, engine.dialect.name, "hour")
    )
    searches = sa.func.sum(source.c.cost_web_search_usd)
    query = (
        sa.select(day, source.c.provider, source.c.model, searches, *sum_columns(source))
        .where(source.c.provider.in_(providers))
        .group_by(day, source.c.provider, source.c.model)
    )
    async with engine.connect() as conn:
        result = (await conn.execute(query)).all()
    web_search = Decimal(0)
    for found in result:
        totals = totals_of(found, 4)
        searched = Decimal(found[3] or 0)
        web_search += searched
        target = row(str(found[0]), found[1], found[2] or "")
        target.proxy.tokens = dict(totals.tokens)
        target.proxy.seen = True
        target.proxy.usd = None if not totals.cost_known else totals.cost_usd - searched
        target.unpriced_requests = totals.unpriced_requests
    return web_search


def _add_usage(target: Row, line: UsageLine) -> None:
    for kind in TOKEN_KINDS:
        target.provider.tokens[kind] += line.tokens[kind]
    target.provider.seen = True
    if line.service_tier in PRIORITY_TIERS:
        target.priority_tokens += sum(line.tokens.values())


def _newest(
    pages: Iterable[StoredPage], start: datetime, end: datetime
) -> tuple[list[UsageLine | CostLine], dict[str, datetime | None]]:
    """The lines of the newest snapshot per report and UTC day in ``[start, end)``, and the
    newest fetch time used per report. ``pages`` come oldest first: a later snapshot replaces
    an earlier one's lines of the same report and day."""
    kept: dict[tuple[str, date], tuple[str, list[UsageLine | CostLine]]] = {}
    used: dict[str, datetime | None] = {USAGE: None, COST: None}  # and any other report found
    for page in pages:
        try:
            read = read_page(
                json.loads(page.body, parse_float=Decimal), page.endpoint, page.provider
            )
        except (PageError, ValueError):  # stored only after the same check: never expected
            continue
        for found in read.buckets:
            if not start <= found.starting_at < end:
                continue
            key = (page.endpoint, found.starting_at.date())
            snapshot, lines = kept.get(key, ("", []))
            if snapshot != page.snapshot_id:
                lines = []
                kept[key] = (page.snapshot_id, lines)
            lines.extend(found.lines)
            newest = used.get(page.endpoint)
            used[page.endpoint] = (
                page.fetched_at if newest is None else max(newest, page.fetched_at)
            )
    return [line for _, lines in kept.values() for line in lines], used
