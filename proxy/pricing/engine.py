"""The pricer: one ``UsageEvent`` in, its exact cost by kind out (or None for an unknown model).

Order of layers for a (provider, model, UTC day, served-as) rate card, each appending its note to
every rate's source:
  1. company ``[[model]]`` override in effect that day, else the catalog (or an overlay alias);
     catalog variants for what was served (batch, fast, OpenAI service tier);
  2. overlay fallbacks for kinds the source lacks (cache writes/reads, web search);
  3. overlay modifiers (US geo, batch/flex without a catalog variant, catalog gap fixes);
  4. company discounts, last.
Rate cards are cached (LRU) so ``price`` on the hot path is a dict lookup plus six Decimal
products. Money is Decimal throughout; each kind is rounded half-even to 1e-10 dollars and the
total is the exact sum of the rounded kinds, so stored breakdowns always add up.

An answer with several charged parts (``billing.charged_parts``: compaction, advisor and
fallback iterations) is priced part by part, each at its own model's rate card (same day and
served-as), and summed kind by kind into one ``Cost``; its ``catalog_model`` is the event
model's. Nothing charged (a refusal before output) is a known $0. Unknown, never a guess: an
event with distrusted usage (``ResponseFacts.distrusted``), a count outside [0, cap], or any
part at a model without a price costs None. ``price`` never raises.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

from proxy.billing import Billing
from proxy.pricing import overlay
from proxy.pricing.billing import Part, charged_parts
from proxy.pricing.catalog import Catalog, normalize_model
from proxy.pricing.overrides import Overrides
from proxy.pricing.rates import Rate, RateCard, Served
from proxy.usage import (
    COST_KINDS,
    REFUSAL,
    REQUEST_CAP,
    TOKEN_CAP,
    TOKEN_KINDS,
    WEB_SEARCH,
    Cost,
    Usage,
    UsageEvent,
    as_utc,
)

log = logging.getLogger("tokenmeter.pricing.engine")

QUANTUM = Decimal("1e-10")
_ZERO = Decimal(0).quantize(QUANTUM)  # Decimal("0E-10"): any kind with no tokens
CARD_CACHE_SIZE = 4096


class Pricer:
    """Prices usage events from the pinned catalog, the overlay and optional overrides."""

    def __init__(self, overrides: Overrides | None = None) -> None:
        self._catalog = Catalog()
        self._overrides = overrides or Overrides()
        digest = self._overrides.digest or "none"
        self._version = (
            f"{self._catalog.version}+overlay {overlay.OVERLAY_VERSION}+overrides {digest}"
        )
        self._card = lru_cache(maxsize=CARD_CACHE_SIZE)(self._build_card)

    @property
    def version(self) -> str:
        """Catalog, overlay and overrides versions: recorded with every cost."""
        return self._version

    def price(self, event: UsageEvent) -> Cost | None:
        """The cost of ``event`` at its request time; None when it is unknown (module doc).
        A subscription exchange costs $0 paid, its list price kept as ``api_equivalent``."""
        cost = self._list_price(event)
        if cost is None or event.attribution.billing != Billing.SUBSCRIPTION:
            return cost
        return seat_cost(cost)

    def _list_price(self, event: UsageEvent) -> Cost | None:
        facts = event.facts
        if facts.distrusted or not _in_range(facts.usage):
            return None
        try:
            if not facts.iterations and facts.stop_reason != REFUSAL:  # the usual answer
                return self._price_one(event, facts.model, facts.usage)
            return self._price_parts(event, charged_parts(facts))
        except ArithmeticError:  # only a hand-built event can get here (counts are capped)
            log.warning("could not price event %s: %r", event.event_id, facts.usage)
            return None

    def estimate(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> Decimal | None:
        """What ``input_tokens`` uncached input and ``output_tokens`` output of ``model`` cost
        today at list rates (the budget guard's in-flight estimate); None for an unknown model."""
        card = self._card(provider, model, _utc_day(datetime.now(UTC)), Served(None, None, None))
        if card is None:
            return None
        return cost_of(card, Usage(input=input_tokens, output=output_tokens)).total

    def _price_one(self, event: UsageEvent, model: str | None, usage: Usage) -> Cost | None:
        card = self._event_card(event, model)
        return None if card is None else cost_of(card, usage)

    def _event_card(self, event: UsageEvent, model: str | None) -> RateCard | None:
        if model is None:
            return None
        facts = event.facts
        served = Served(facts.service_tier, facts.inference_geo, facts.speed)
        return self._card(event.provider, model, _utc_day(event.started_at), served)

    def _price_parts(self, event: UsageEvent, parts: list[Part]) -> Cost | None:
        """Each part at its own model's card, summed; nothing charged is a known $0."""
        costs = []
        for model, usage in parts:
            cost = self._price_one(event, model, usage)
            if cost is None:
                return None
            costs.append((model, cost))
        if not costs:
            card = self._event_card(event, event.facts.model)
            return Cost(
                _ZERO,
                dict.fromkeys(COST_KINDS, _ZERO),
                _ZERO,
                self._version,
                card.catalog_model if card else None,
            )
        own = [cost for model, cost in costs if model == event.facts.model]
        return summed_costs([cost for _, cost in costs], (own or [costs[0][1]])[0])

    def rate_card(
        self,
        provider: str,
        model: str,
        at: datetime,
        *,
        service_tier: str | None = None,
        inference_geo: str | None = None,
        speed: str | None = None,
    ) -> RateCard | None:
        """Every rate (with its source) that ``price`` would use; None for an unknown model."""
        served = Served(service_tier, inference_geo, speed)
        return self._card(provider, model, _utc_day(at), served)

    def _build_card(self, provider: str, model: str, on: date, served: Served) -> RateCard | None:
        served = Served(*(value.lower() if value else None for value in served))
        name = normalize_model(model)
        base = self._base_rates(provider, name, on, served)
        if base is None:
            return None
        rates, catalog_model, variants, from_catalog = base
        filled = overlay.fill_gaps(provider, rates)
        if filled is None:
            return None
        key = (provider, catalog_model or name, on, served)
        modified = overlay.apply_rules(filled, key, variants, from_catalog)
        names = (name, catalog_model) if catalog_model else (name,)
        final = self._overrides.discounted(modified, provider, names, on)
        return RateCard(provider, name, catalog_model, on, served, final, self._version)

    def _base_rates(
        self, provider: str, name: str, on: date, served: Served
    ) -> tuple[dict[str, Rate], str | None, frozenset[str], bool] | None:
        """(rates, catalog model id, catalog variants applied, came from the catalog)."""
        override = self._overrides.model_for(provider, name, on)
        info = self._catalog.find(provider, name)
        if override is not None:
            return override.rates(), info.id if info else None, frozenset(), False
        note = None
        if info is None and (aliased := overlay.alias(provider, name)) is not None:
            info, note = self._catalog.find(provider, aliased[0]), aliased[1]
        if info is None:
            return None
        found = self._catalog.rates(info, on, served)
        rates = found.rates
        if note is not None:
            rates = {
                kind: rate.scaled(Decimal(1), f"overlay alias: {note}")
                for kind, rate in rates.items()
            }
        return rates, info.id, found.variants, True


def cost_of(card: RateCard, usage: Usage) -> Cost:
    """The cost of ``usage`` at ``card``'s rates, by kind, with the no-caching sticker price.

    Every kind is in ``by_kind``; a kind with no tokens costs ``_ZERO`` without any arithmetic
    (what ``rate * 0`` comes to once rounded, as rates are never negative). The per-kind
    ``_dollars`` is written out in the loop: this runs once per exchange."""
    total_input = usage.total_input()
    rates = card.rates
    by_kind: dict[str, Decimal] = {}
    total = _ZERO
    for kind in TOKEN_KINDS:
        count = getattr(usage, kind)
        if count:
            rate = rates[kind]
            price = rate.at(total_input) if rate.tiers else rate.base
            dollars = (price * count).scaleb(-6).quantize(QUANTUM, ROUND_HALF_EVEN)
            total += dollars
            by_kind[kind] = dollars
        else:
            by_kind[kind] = _ZERO
    web = _ZERO
    if searches := usage.web_search_requests:
        web = _dollars(_price(rates[WEB_SEARCH], total_input) * searches, 3)
        total += web
    by_kind[WEB_SEARCH] = web
    uncached = _price(rates["input"], total_input) * total_input
    sticker = _dollars(uncached + _price(rates["output"], total_input) * usage.output, 6)
    if searches:
        sticker += web
    return Cost(total, by_kind, sticker, card.price_version, card.catalog_model)


def seat_cost(listed: Cost) -> Cost:
    """What a subscription exchange costs: $0 paid per token (a seat's price is monthly, not
    per token), the list price ``listed`` kept as its API-equivalent value."""
    zeros = dict.fromkeys(COST_KINDS, _ZERO)
    return Cost(
        _ZERO,
        zeros,
        _ZERO,
        listed.price_version,
        listed.catalog_model,
        api_equivalent=listed.total,
    )


def summed_costs(costs: list[Cost], main: Cost) -> Cost:
    """Costs of one event's parts as one ``Cost``, kind by kind; versions from ``main``."""
    by_kind = {kind: sum((c.by_kind[kind] for c in costs), _ZERO) for kind in COST_KINDS}
    sticker = sum((c.sticker for c in costs), _ZERO)
    total = sum(by_kind.values(), _ZERO)
    return Cost(total, by_kind, sticker, main.price_version, main.catalog_model)


def _in_range(usage: Usage) -> bool:
    """Every count a response could have said (taps cap them; a hand-built event may not)."""
    counts = (usage.input, usage.cache_write_5m, usage.cache_write_1h, usage.cache_read)
    if min(*counts, usage.output) < 0 or max(*counts, usage.output) > TOKEN_CAP:
        return False
    return 0 <= usage.web_search_requests <= REQUEST_CAP


def _price(rate: Rate, total_input: int) -> Decimal:
    """``rate.at(total_input)`` without the call for the usual untiered rate."""
    return rate.at(total_input) if rate.tiers else rate.base


def _dollars(amount: Decimal, exponent: int) -> Decimal:
    """``amount`` divided by 10**exponent (exact), rounded half-even to 1e-10 dollars."""
    return amount.scaleb(-exponent).quantize(QUANTUM, ROUND_HALF_EVEN)


def _utc_day(at: datetime) -> date:
    """The UTC calendar day of ``at``; naive datetimes are taken as UTC (as the catalog does)."""
    return as_utc(at).date()
