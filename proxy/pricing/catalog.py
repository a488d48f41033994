"""The bundled ``genai-prices`` catalog, read offline: model lookup and dated, served-as rates.

Contract: ``Catalog.find`` maps a (provider, model name) to the catalog's model or ``None``;
``Catalog.rates`` returns that model's rates on a UTC day for what the response said was served
(batch, fast mode, OpenAI service tiers) as ``Rate`` objects whose source names the catalog
version, the model id, the variant and the model's reference URL. Rates the catalog lacks are
returned as missing; filling them is the overlay's job. This module never calls the catalog's
update/fetch functions: prices change only when the pinned package version does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from importlib.metadata import version

from genai_prices import data_snapshot
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    PriceVariant,
    Provider,
    StartDateConstraint,
    TieredPrices,
)

from proxy.pricing.rates import Rate, Served

CATALOG_PACKAGE = "genai-prices"

# Our kind -> the catalog's price keys, first present wins.
_PRICE_KEYS: dict[str, tuple[str, ...]] = {
    "input": ("input_mtok",),
    "cache_write_5m": ("cache_write_5m_mtok", "cache_write_mtok"),
    "cache_write_1h": ("cache_write_1h_mtok",),
    "cache_read": ("cache_read_mtok",),
    "output": ("output_mtok",),
    "web_search": ("web_searches_kcount",),
}

_PATH_PREFIX = re.compile(r"^.*/")  # "anthropic/", "openai/", Bedrock ARNs "…/inference-profile/"
_BEDROCK_PREFIX = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.")  # "us.anthropic.", "anthropic."
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")  # "-v1:0"
_URL = re.compile(r"https?://[^\s,;)]+")


def normalize_model(name: str) -> str:
    """The name to look up: lower case, no ``[1m]`` suffix, no provider prefix or Bedrock tag."""
    name = name.strip().lower().removesuffix("[1m]")
    name = _BEDROCK_PREFIX.sub("", _PATH_PREFIX.sub("", name))
    return _BEDROCK_VERSION.sub("", name)


@dataclass(frozen=True, slots=True)
class CatalogRates:
    """A model's catalog rates (missing kinds absent) and the variants that applied."""

    rates: dict[str, Rate]
    variants: frozenset[str]  # labels such as "processing=batch", "speed=fast"


class Catalog:
    """Lookups in the bundled snapshot, cached per (provider, name)."""

    def __init__(self) -> None:
        self.version = f"{CATALOG_PACKAGE} {version(CATALOG_PACKAGE)}"
        self._snapshot = data_snapshot.get_snapshot()
        self._found: dict[tuple[str, str], tuple[Provider, ModelInfo] | None] = {}

    def find(self, provider: str, name: str) -> ModelInfo | None:
        """The catalog model for a normalized ``name`` of ``provider``, or None."""
        found = self._lookup(provider, name)
        return found[1] if found else None

    def rates(self, model: ModelInfo, on: date, served: Served) -> CatalogRates:
        """Rates of ``model`` on UTC day ``on`` for what was ``served``."""
        at = datetime.combine(on, time(), UTC)
        standard, since = _standard_prices(model, at)
        variants = _active_variants(model, at, _price_context(served))
        url = self._reference_url(model)
        rates: dict[str, Rate] = {}
        for kind, keys in _PRICE_KEYS.items():
            rate = self._rate(model, keys, standard, variants, since, url)
            if rate is not None:
                rates[kind] = rate
        return CatalogRates(rates, frozenset(_label(variant) for variant in variants))

    def _lookup(self, provider: str, name: str) -> tuple[Provider, ModelInfo] | None:
        key = (provider, name)
        if key not in self._found:
            try:
                self._found[key] = self._snapshot.find_provider_model(name, None, provider, None)
            except LookupError:
                self._found[key] = None
        return self._found[key]

    def _rate(
        self,
        model: ModelInfo,
        keys: tuple[str, ...],
        standard: ModelPrice,
        variants: list[PriceVariant],
        since: date | None,
        url: str,
    ) -> Rate | None:
        for variant in variants:
            if (price := _first_price(variant.prices, keys)) is not None:
                source = f"{self.version} {model.id} [{_variant_source(variant)}] ({url})"
                return _as_rate(price, source)
        price = _first_price(standard, keys)
        if price is None:
            return None
        dated = f"in effect from {since.isoformat()}" if since else "undated: in effect as listed"
        return _as_rate(price, f"{self.version} {model.id}, {dated} ({url})")

    def _reference_url(self, model: ModelInfo) -> str:
        match = _URL.search(model.price_comments or "")
        if match:
            return match.group(0).rstrip(".")
        for provider in self._snapshot.providers:
            if any(candidate is model for candidate in provider.models):
                return (provider.pricing_urls or ["no reference URL"])[0]
        return "no reference URL"


def _standard_prices(model: ModelInfo, at: datetime) -> tuple[ModelPrice, date | None]:
    """The standard prices active at ``at`` and the start date of that price set, if dated."""
    if isinstance(model.prices, ModelPrice):
        return model.prices, None
    chosen: ConditionalPrice = model.prices[0]
    for conditional in reversed(model.prices):
        if conditional.constraint is None or conditional.constraint.active(at):
            chosen = conditional
            break
    constraint = chosen.constraint
    since = constraint.start_date if isinstance(constraint, StartDateConstraint) else None
    return chosen.prices, since


def _price_context(served: Served) -> dict[str, str]:
    context: dict[str, str] = {}
    if served.service_tier == "batch":
        context["processing"] = "batch"
    elif served.service_tier:
        context["service_tier"] = served.service_tier
    if served.speed:
        context["speed"] = served.speed
    return context


def _active_variants(model: ModelInfo, at: datetime, context: dict[str, str]) -> list[PriceVariant]:
    return [
        variant
        for variant in model.price_variants or ()
        if (variant.constraint is None or variant.constraint.active(at))
        and all(context.get(key) == value for key, value in variant.when.items())
    ]


def _label(variant: PriceVariant) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(variant.when.items()))


def _variant_source(variant: PriceVariant) -> str:
    constraint = variant.constraint
    if isinstance(constraint, StartDateConstraint):
        return f"{_label(variant)}, in effect from {constraint.start_date.isoformat()}"
    return _label(variant)


def _first_price(prices: ModelPrice, keys: tuple[str, ...]) -> Decimal | TieredPrices | None:
    for key in keys:
        value = prices.__dict__.get(key)
        if isinstance(value, Decimal | TieredPrices):
            return value
    return None


def _as_rate(price: Decimal | TieredPrices, source: str) -> Rate:
    if isinstance(price, TieredPrices):
        return Rate(price.base, source, tuple((tier.start, tier.price) for tier in price.tiers))
    return Rate(price, source)
