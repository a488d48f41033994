"""``Totals``: the sums every report is built from, and how SQL rows become them.

Money stays ``Decimal`` from the database to the JSON string; ratios are computed here in Python
(never divided in SQL, so SQLite and PostgreSQL give the same answer). Definitions (README):
blended $/MTok = Σ cost / Σ all five token kinds × 10⁶; cache hit rate = cache_read / all input;
sticker = the same tokens at list input/output price with no caching; cache savings = sticker −
cost; cache discount = savings / sticker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa

from proxy.store.tables import usage_events
from proxy.usage import INPUT_KINDS, TOKEN_KINDS

MTOK = Decimal(1_000_000)
MONEY = Decimal("0.000001")
RATIO = Decimal("0.0001")
TOKEN_COLUMNS = {kind: f"{kind}_tokens" for kind in TOKEN_KINDS}


class ReportError(ValueError):
    """A report was asked for with arguments that make no sense (shown to the user as 400)."""


def money(value: Decimal) -> str:
    """Dollars as the API prints them: a string with six decimals."""
    return str(value.quantize(MONEY))


def ratio(numerator: Decimal | int, denominator: Decimal | int) -> Decimal | None:
    """``numerator / denominator`` rounded half-even to 4 decimals; None when dividing by 0."""
    if not denominator:
        return None
    quotient = Decimal(numerator) / Decimal(denominator)
    return quotient.quantize(RATIO, rounding=ROUND_HALF_EVEN)


def text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(slots=True)
class Totals:
    """Sums over any slice; everything else a report shows is derived from these."""

    requests: int = 0
    errors: int = 0
    unpriced_requests: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    web_search_requests: int = 0
    cost_usd: Decimal = Decimal(0)
    sticker_usd: Decimal = Decimal(0)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def blended_usd_per_mtok(self) -> Decimal | None:
        total = self.total_tokens
        return None if not total else (self.cost_usd * MTOK / total).quantize(MONEY)

    @property
    def sticker_usd_per_mtok(self) -> Decimal | None:
        total = self.total_tokens
        return None if not total else (self.sticker_usd * MTOK / total).quantize(MONEY)

    @property
    def cache_savings_usd(self) -> Decimal:
        return self.sticker_usd - self.cost_usd

    @property
    def cache_discount(self) -> Decimal | None:
        """The share of the sticker price that caching saved (0.8 = 80 % off)."""
        return ratio(self.cache_savings_usd, self.sticker_usd)

    @property
    def cache_hit_rate(self) -> Decimal | None:
        """cache_read / all input, rounded half-even to 4 decimals like every ratio."""
        return ratio(self.tokens["cache_read"], sum(self.tokens[k] for k in INPUT_KINDS))

    @property
    def input_output_ratio(self) -> Decimal | None:
        """All input tokens per output token (agentic traffic runs ~300)."""
        all_input = sum(self.tokens[k] for k in INPUT_KINDS)
        output = self.tokens["output"]
        return None if not output else (Decimal(all_input) / output).quantize(Decimal("0.01"))

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "unpriced_requests": self.unpriced_requests,
            "tokens": dict(self.tokens),
            "total_tokens": self.total_tokens,
            "web_search_requests": self.web_search_requests,
            "cost_usd": money(self.cost_usd),
            "sticker_usd": money(self.sticker_usd),
            "cache_savings_usd": money(self.cache_savings_usd),
            "cache_discount": text(self.cache_discount),
            "blended_usd_per_mtok": text(self.blended_usd_per_mtok),
            "sticker_usd_per_mtok": text(self.sticker_usd_per_mtok),
            "cache_hit_rate": text(self.cache_hit_rate),
            "input_output_ratio": text(self.input_output_ratio),
        }


def sum_columns(table: sa.FromClause) -> list[sa.ColumnElement[Any]]:
    """The SELECT list ``totals_of`` reads: counts, token sums, web searches, cost, sticker."""
    c = table.c
    if table is usage_events:
        requests: sa.ColumnElement[Any] = sa.func.count()
        errors: sa.ColumnElement[Any] = sa.func.sum(sa.case((c.status != "ok", 1), else_=0))
        unpriced: sa.ColumnElement[Any] = sa.func.sum(sa.case((c.cost_usd.is_(None), 1), else_=0))
    else:
        requests = sa.func.sum(c.requests)
        errors = sa.func.sum(c.errors)
        unpriced = sa.func.sum(c.unpriced_requests)
    tokens = [sa.func.sum(c[TOKEN_COLUMNS[k]]) for k in TOKEN_KINDS]
    dollars = [sa.func.sum(c.cost_usd), sa.func.sum(c.sticker_usd)]
    return [requests, errors, unpriced, *tokens, sa.func.sum(c.web_search_requests), *dollars]


def totals_of(row: sa.Row[Any] | tuple[Any, ...], offset: int = 0) -> Totals:
    """A ``Totals`` from a row whose columns from ``offset`` on are ``sum_columns``."""
    values = list(row)[offset:]
    n = len(TOKEN_KINDS)
    return Totals(
        requests=int(values[0] or 0),
        errors=int(values[1] or 0),
        unpriced_requests=int(values[2] or 0),
        tokens={k: int(v or 0) for k, v in zip(TOKEN_KINDS, values[3 : 3 + n], strict=True)},
        web_search_requests=int(values[3 + n] or 0),
        cost_usd=Decimal(values[4 + n] or 0),
        sticker_usd=Decimal(values[5 + n] or 0),
    )


def add(into: Totals, part: Totals) -> None:
    """Add ``part`` into ``into`` in place."""
    into.requests += part.requests
    into.errors += part.errors
    into.unpriced_requests += part.unpriced_requests
    into.web_search_requests += part.web_search_requests
    into.cost_usd += part.cost_usd
    into.sticker_usd += part.sticker_usd
    for kind in TOKEN_KINDS:
        into.tokens[kind] += part.tokens[kind]


def sum_totals(parts: list[Totals]) -> Totals:
    total = Totals()
    for part in parts:
        add(total, part)
    return total
