"""How spend is spread across people: percentiles, top-N share and the Gini coefficient.

Token use is a power law (a few people burn 100B tokens a month, the median far less), so a mean
says little. Values are per-person totals over a window, from the rollup; everyone with a people
row in effect counts, with 0 if they used nothing (leaving them out would hide the skew), and
traffic without a user is left out (it is not a person). Everything is computed exactly with
``Fraction`` and rounded once at the end.

- Percentile p: linear interpolation between closest ranks (NumPy's default, "type 7").
- Top-N share: the N largest values' sum over the total.
- Gini: Σᵢ (2i − n − 1)·xᵢ / (n·Σx) over values sorted ascending, i from 1; 0 = equal, →1 =
  one person uses everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.people import in_effect, load_people
from proxy.reports.compensation import Window
from proxy.reports.totals import RATIO, ReportError, Totals
from proxy.reports.usage import NONE_KEY, usage
from proxy.reports.window import Filters

METRICS = ("tokens", "cost_usd")
PERCENTILES = (50, 75, 90, 95, 99)
TOP_N = (1, 5, 10)
_PLACES = {"tokens": Decimal(1), "cost_usd": Decimal("0.000001")}


def percentile(sorted_values: Sequence[Fraction], p: int) -> Fraction:
    """The ``p``-th percentile of ascending ``sorted_values`` (linear interpolation)."""
    position = Fraction(p, 100) * (len(sorted_values) - 1)
    below = int(position)
    if below + 1 >= len(sorted_values):
        return sorted_values[below]
    low, high = sorted_values[below], sorted_values[below + 1]
    return low + (high - low) * (position - below)


def top_share(sorted_values: Sequence[Fraction], n: int) -> Fraction | None:
    """The share of the total held by the ``n`` largest values; None when the total is 0."""
    total = sum(sorted_values, Fraction(0))
    return None if not total else sum(sorted_values[-n:], Fraction(0)) / total


def gini(sorted_values: Sequence[Fraction]) -> Fraction | None:
    """The Gini coefficient of ascending ``sorted_values``; None when the total is 0."""
    n, total = len(sorted_values), sum(sorted_values, Fraction(0))
    if not total:
        return None
    weighted = sum(((2 * i - n - 1) * x for i, x in enumerate(sorted_values, 1)), Fraction(0))
    return weighted / (n * total)


def _decimal(value: Fraction | None, places: Decimal) -> str | None:
    if value is None:
        return None
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return str(exact.quantize(places, rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class Spread:
    """How a distribution's values spread, each figure as the API writes it (None: no value)."""

    people: int
    total: str | None
    percentiles: dict[str, str | None]  # p50 … p99
    max: str | None
    top_share: dict[str, str | None]  # top1, top5 …
    gini: str | None


@dataclass(slots=True)
class Distribution:
    window: Window
    metric: str
    values: dict[str, Fraction]  # user -> total
    top: tuple[int, ...]
    unpriced_requests: int = 0  # requests in the window without a price (left out of cost_usd)

    def spread(self) -> Spread:
        ordered = sorted(self.values.values())
        places = _PLACES[self.metric]
        total = _decimal(sum(ordered, Fraction(0)), places)
        if not ordered:
            return Spread(0, total, {}, None, {}, None)
        return Spread(
            people=len(ordered),
            total=total,
            percentiles={f"p{p}": _decimal(percentile(ordered, p), places) for p in PERCENTILES},
            max=_decimal(ordered[-1], places),
            top_share={f"top{n}": _decimal(top_share(ordered, n), RATIO) for n in self.top},
            gini=_decimal(gini(ordered), RATIO),
        )

    def as_json(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"window": self.window.as_json(), "metric": self.metric}
        if self.metric == "cost_usd":  # unknown dollars are not $0: say what is left out
            stats["cost_complete"] = not self.unpriced_requests
            stats["unpriced_requests"] = self.unpriced_requests
        spread = self.spread()
        stats |= {"people": spread.people, "total": spread.total}
        if not spread.people:
            return {**stats, "percentiles": {}, "top_share": {}, "gini": None, "max": None}
        stats |= {"percentiles": spread.percentiles, "max": spread.max}
        return stats | {"top_share": spread.top_share, "gini": spread.gini}

    def rows(self) -> list[dict[str, Any]]:
        """Per-person values, largest first, for CSV and terminal tables."""
        ranked = sorted(self.values.items(), key=lambda kv: (-kv[1], kv[0]))
        places = _PLACES[self.metric]
        return [{"user": user, self.metric: _decimal(value, places)} for user, value in ranked]


async def distribution(
    engine: AsyncEngine,
    window: Window,
    metric: str = "tokens",
    top: Sequence[int] = TOP_N,
    by_user: list[tuple[str, Totals]] | None = None,
) -> Distribution:
    """Per-person ``metric`` totals over ``window`` and how unequal they are; ``by_user``:
    ``usage`` by user over ``window`` when the caller has read it already."""
    if metric not in METRICS:
        raise ReportError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if any(n < 1 for n in top):
        raise ReportError("top must list positive counts of people")
    if by_user is None:
        by_user = await usage(engine, "user", Filters(window.start, window.end))
    spent = dict(by_user)
    spent.pop(NONE_KEY, None)
    values = dict.fromkeys(in_effect(await load_people(engine), window.last_day), Fraction(0))
    for user, totals in spent.items():
        amount = totals.total_tokens if metric == "tokens" else totals.cost_usd
        values[user] = Fraction(amount)
    unpriced = sum(totals.unpriced_requests for totals in spent.values())
    return Distribution(window, metric, values, tuple(top), unpriced)
