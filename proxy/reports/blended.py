"""Real blended $/MTok beside the sticker price, and what caching saved, per slice.

All dollars over all tokens (five kinds) for each model, user, team, provider or day; the sticker
figure prices the same tokens at list input/output rates with no caching (``Cost.sticker``,
computed per event by pricing), so ``cache_savings_usd`` and ``cache_discount`` are what caching
gave. Read as ``usage`` reads (whole hours from the rollups, edge hours from raw events); the
dollars and both $/MTok cover priced requests only (``Totals``), and each row says so when some
requests have no price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import ReportError, Totals, sum_totals
from proxy.reports.usage import usage
from proxy.reports.window import Filters

BLENDED_GROUPS = ("model", "user", "team", "provider", "day")


@dataclass(slots=True)
class Blended:
    group_by: str
    filters: Filters
    groups: list[tuple[str, Totals]]

    @property
    def total(self) -> Totals:
        return sum_totals([totals for _, totals in self.groups])

    def as_json(self) -> dict[str, Any]:
        return {
            "group_by": self.group_by,
            **self.filters.window_json(),
            "rows": self.rows(),
            "total": self.total.as_json(),
        }

    def rows(self) -> list[dict[str, Any]]:
        return [{self.group_by: key, **totals.as_json()} for key, totals in self.groups]


async def blended(engine: AsyncEngine, group_by: str, filters: Filters) -> Blended:
    """Blended and sticker $/MTok per ``group_by`` over ``filters``."""
    if group_by not in BLENDED_GROUPS:
        raise ReportError(f"by must be one of {', '.join(BLENDED_GROUPS)}; got {group_by!r}")
    return Blended(group_by, filters, await usage(engine, group_by, filters))
