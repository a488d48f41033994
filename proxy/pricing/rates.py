"""Rates and rate cards: the one shape every pricing layer reads and writes.

A ``Rate`` is a price for one kind (``$/MTok`` for token kinds, ``$/1000`` for web searches),
optionally tiered on the request's total input tokens, and carries the text that says where it
came from. Each layer (catalog, overlay, overrides) returns new rates with its own note appended
to ``source``, so a rate card printed by ``tokenmeter prices show`` is its own audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from proxy.usage import COST_KINDS, WEB_SEARCH


class Served(NamedTuple):
    """What the response said about how it was served: it decides variants and modifiers."""

    service_tier: str | None = None
    inference_geo: str | None = None
    speed: str | None = None

    def get(self, name: str) -> str | None:
        value: str | None = getattr(self, name)
        return value


@dataclass(frozen=True, slots=True)
class Rate:
    """One price and its provenance. ``tiers``: (threshold, price) on total input tokens."""

    base: Decimal
    source: str
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def at(self, total_input: int) -> Decimal:
        """The price for a request of ``total_input`` tokens: crossing a tier reprices all."""
        for start, price in reversed(self.tiers):
            if total_input > start:
                return price
        return self.base

    def scaled(self, factor: Decimal, note: str) -> Rate:
        """This rate times ``factor`` (tiers too), with ``note`` appended to its source."""
        tiers = tuple((start, price * factor) for start, price in self.tiers)
        return Rate(self.base * factor, f"{self.source}; {note}", tiers)

    def describe(self) -> str:
        tiers = "".join(f", >{start:,} input tokens: ${_plain(p)}" for start, p in self.tiers)
        return f"${_plain(self.base)}{tiers}"


@dataclass(frozen=True, slots=True)
class RateCard:
    """Every rate one (provider, model, day, served-as) is billed at, with sources."""

    provider: str
    model: str  # the normalized name that was looked up
    catalog_model: str | None  # the catalog's id, None for an override-only model
    on: date  # the UTC day the rates are valid for
    served: Served
    rates: Mapping[str, Rate]  # COST_KINDS -> Rate
    price_version: str

    def lines(self) -> list[str]:
        """Human-readable lines, one per kind: rate, unit, source."""
        head = f"{self.provider} {self.model} on {self.on.isoformat()} ({self.price_version})"
        body = [
            f"  {kind:<15} {rate.describe()} {_unit(kind)}  <- {rate.source}"
            for kind, rate in ((kind, self.rates[kind]) for kind in COST_KINDS)
        ]
        return [head, *body]


def _unit(kind: str) -> str:
    return "per 1000 searches" if kind == WEB_SEARCH else "per MTok"


def _plain(amount: Decimal) -> str:
    """``Decimal("37.50")`` -> ``"37.5"``, never scientific notation."""
    return f"{amount.normalize():f}"
