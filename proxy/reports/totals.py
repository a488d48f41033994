"""``Totals``: the sums every report is built from, and how SQL rows become them.

Money stays ``Decimal`` from the database to the JSON string; ratios are computed here in Python
(never divided in SQL, so SQLite and PostgreSQL give the same answer). Definitions (README):
blended $/MTok = Σ cost / Σ all five token kinds of *priced* requests × 10⁶; cache hit rate =
cache_read / all input; sticker = the same tokens at list input/output price with no caching;
cache savings = sticker − cost; cache discount = savings / sticker.

Two kinds of dollars, side by side and never summed: ``cost_usd`` is what was paid per token;
``api_equivalent_usd`` is what subscription (seat) traffic would have cost at list price (its
paid cost is $0: the seat is paid per month). Blended $/MTok divides paid dollars by the tokens
of paid, priced traffic only (``paid_tokens``); a slice with seat traffic has a ``billing_note``.

Unknown dollars are never $0: a slice whose requests all lack a price has ``cost_usd`` (and every
dollar figure) null; one with some has ``cost_complete: false``, ``unpriced_requests`` and
``unpriced_tokens``, dollars and $/MTok over the priced part only, and a ``cost_note`` saying
so. A slice with no requests at all costs a known $0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa

from proxy.store.aggregates import SUM_OF, TOKEN_KIND_COLUMNS
from proxy.store.rollup import summed
from proxy.store.tables import usage_events
from proxy.usage import INPUT_KINDS, TOKEN_KINDS

MTOK = Decimal(1_000_000)
MONEY = Decimal("0.000001")
RATIO = Decimal("0.0001")
# The rollup sums a ``Totals`` is made of, in ``sum_columns`` order.
_COUNTS = (
    "requests",
    "errors",
    "unpriced_requests",
    "unpriced_tokens",
    "web_search_requests",
    "api_equivalent_requests",
    "api_equivalent_tokens",
)
_DOLLARS = ("cost_usd", "sticker_usd", "api_equivalent_usd")
_READ = (*_COUNTS, *TOKEN_KIND_COLUMNS.values(), *_DOLLARS)


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


def exact(value: Decimal) -> str:
    """An amount entered by a person (a value, hours, pay) as written: ``2400``, ``0.5``."""
    return f"{value.normalize():f}"


@dataclass(slots=True)
class Totals:
    """Sums over any slice; everything else a report shows is derived from these."""

    requests: int = 0
    errors: int = 0
    unpriced_requests: int = 0
    unpriced_tokens: int = 0  # the five token kinds of requests without a price
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    web_search_requests: int = 0
    cost_usd: Decimal = Decimal(0)
    sticker_usd: Decimal = Decimal(0)
    api_equivalent_requests: int = 0  # subscription (seat) requests with a list price
    api_equivalent_tokens: int = 0  # their five token kinds
    api_equivalent_usd: Decimal = Decimal(0)  # their list price; paid: $0, not in cost_usd

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def priced_tokens(self) -> int:
        """Tokens of requests with a known price (paid or API-equivalent)."""
        return self.total_tokens - self.unpriced_tokens

    @property
    def paid_tokens(self) -> int:
        """Tokens of priced requests paid per token: the denominator of every $/MTok."""
        return self.priced_tokens - self.api_equivalent_tokens

    @property
    def cost_known(self) -> bool:
        """Whether any dollars are known: false when every request lacks a price."""
        return self.unpriced_requests < self.requests or not self.requests

    @property
    def cost_complete(self) -> bool:
        return not self.unpriced_requests

    @property
    def known_cost_usd(self) -> Decimal | None:
        """The dollars of the priced requests; None when there are none (unknown, not $0)."""
        return self.cost_usd if self.cost_known else None

    @property
    def blended_usd_per_mtok(self) -> Decimal | None:
        return self._per_mtok(self.cost_usd)

    @property
    def sticker_usd_per_mtok(self) -> Decimal | None:
        return self._per_mtok(self.sticker_usd)

    def _per_mtok(self, dollars: Decimal) -> Decimal | None:
        priced = self.paid_tokens
        return None if not priced else (dollars * MTOK / priced).quantize(MONEY)

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
        known = self.cost_known
        data = {
            "requests": self.requests,
            "errors": self.errors,
            "unpriced_requests": self.unpriced_requests,
            "unpriced_tokens": self.unpriced_tokens,
            "tokens": dict(self.tokens),
            "total_tokens": self.total_tokens,
            "priced_tokens": self.priced_tokens,
            "web_search_requests": self.web_search_requests,
            "cost_usd": money(self.cost_usd) if known else None,
            "cost_complete": self.cost_complete,
            "api_equivalent_usd": money(self.api_equivalent_usd),
            "api_equivalent_requests": self.api_equivalent_requests,
            "api_equivalent_tokens": self.api_equivalent_tokens,
            "paid_tokens": self.paid_tokens,
            "sticker_usd": money(self.sticker_usd) if known else None,
            "cache_savings_usd": money(self.cache_savings_usd) if known else None,
            "cache_discount": text(self.cache_discount) if known else None,
            "blended_usd_per_mtok": text(self.blended_usd_per_mtok),
            "sticker_usd_per_mtok": text(self.sticker_usd_per_mtok),
            "cache_hit_rate": text(self.cache_hit_rate),
            "input_output_ratio": text(self.input_output_ratio),
        }
        if not self.cost_complete:
            data["cost_note"] = self.cost_note()
        if self.api_equivalent_requests:
            data["billing_note"] = self.billing_note()
        return data

    def billing_note(self) -> str:
        """Why seat traffic adds nothing to ``cost_usd``, in words."""
        n = self.api_equivalent_requests
        return (
            f"{n:,} subscription (seat) request{'s' * (n != 1)} paid $0 per token (a seat is"
            f" paid per month): their list price is api_equivalent_usd, not in cost_usd, and"
            f" $/MTok covers paid traffic only"
        )

    def cost_note(self) -> str:
        """What the dollar figures of an incomplete slice leave out, in words."""
        requests = f"{self.unpriced_requests:,} request{'s' * (self.unpriced_requests != 1)}"
        left_out = f"{requests} ({self.unpriced_tokens:,} tokens) without a known price"
        if not self.cost_known:
            return f"{left_out}: the cost is unknown"
        return f"{left_out}: dollars and $/MTok cover the priced requests only"


def sum_columns(table: sa.FromClause) -> list[sa.ColumnElement[Any]]:
    """The SELECT list ``totals_of`` reads, over raw events (each summed as a rollup row sums
    it) or over rows shaped like ``usage_hourly`` (their sums summed)."""
    if table is usage_events:
        return [summed(SUM_OF[name]) for name in _READ]
    return [sa.func.sum(table.c[name]) for name in _READ]


def totals_of(row: sa.Row[Any] | tuple[Any, ...], offset: int = 0) -> Totals:
    """A ``Totals`` from a row whose columns from ``offset`` on are ``sum_columns``."""
    n = dict(zip(_READ, (v or 0 for v in tuple(row)[offset:]), strict=True))
    return Totals(
        requests=int(n["requests"]),
        errors=int(n["errors"]),
        unpriced_requests=int(n["unpriced_requests"]),
        unpriced_tokens=int(n["unpriced_tokens"]),
        tokens={kind: int(n[column]) for kind, column in TOKEN_KIND_COLUMNS.items()},
        web_search_requests=int(n["web_search_requests"]),
        cost_usd=Decimal(n["cost_usd"]),
        sticker_usd=Decimal(n["sticker_usd"]),
        api_equivalent_requests=int(n["api_equivalent_requests"]),
        api_equivalent_tokens=int(n["api_equivalent_tokens"]),
        api_equivalent_usd=Decimal(n["api_equivalent_usd"]),
    )


def add(into: Totals, part: Totals) -> None:
    """Add ``part`` into ``into`` in place."""
    into.requests += part.requests
    into.errors += part.errors
    into.unpriced_requests += part.unpriced_requests
    into.unpriced_tokens += part.unpriced_tokens
    into.web_search_requests += part.web_search_requests
    into.cost_usd += part.cost_usd
    into.sticker_usd += part.sticker_usd
    into.api_equivalent_requests += part.api_equivalent_requests
    into.api_equivalent_tokens += part.api_equivalent_tokens
    into.api_equivalent_usd += part.api_equivalent_usd
    for kind in TOKEN_KINDS:
        into.tokens[kind] += part.tokens[kind]


def sum_totals(parts: list[Totals]) -> Totals:
    total = Totals()
    for part in parts:
        add(total, part)
    return total
