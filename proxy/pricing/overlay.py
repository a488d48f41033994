"""What the catalog does not model: gap-filling fallbacks, model aliases and dated modifiers.

Contract: everything here is one small table with a name, a source and an effective date per rule,
versioned by ``OVERLAY_VERSION`` (bump it whenever a rule changes, so events record it).

- ``fill_gaps`` completes a rate set whose catalog entry lacks a kind (e.g. no 1 h cache write):
  Anthropic 5 m write 1.25x input, 1 h write 2x input, read 0.1x input; OpenAI cache writes at the
  input rate and reads at the input rate when no cached rate is published; web search $10/1000.
- ``alias`` names the catalog model that prices a model the catalog does not list.
- ``apply_rules`` scales rates for what the response said was served and the catalog does not
  price: US inference geo, batch or flex without a catalog variant at that date, Opus 4.6/4.7 fast
  mode, and the Sonnet 5.5 cache-read price before its cut.
Rules marked ``catalog_only`` correct a catalog gap and never touch company override prices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from proxy.pricing.rates import Rate, Served
from proxy.usage import TOKEN_KINDS, WEB_SEARCH

OVERLAY_VERSION = "2026-11-26"

ANTHROPIC_PRICING = "https://platform.claude.com/docs/en/about-claude/pricing"
ANTHROPIC_BATCH = "https://platform.claude.com/docs/en/build-with-claude/batch-processing#pricing"
ANTHROPIC_FAST = "https://platform.claude.com/docs/en/build-with-claude/fast-mode#pricing"
ANTHROPIC_GEO = "https://platform.claude.com/docs/en/manage-claude/data-residency"
OPENAI_PRICING = "https://developers.openai.com/api/docs/pricing"

# Claude 4.6 and later: Opus/Sonnet/Haiku 4.6+, every 5.x, Fable and Mythos.
CLAUDE_46_PLUS = (
    r"claude-(?:(?:opus|sonnet|haiku)-(?:4[-.][6-9]|[5-9]|[1-9]\d)|fable|mythos)(?:[-.@]|$)"
)


@dataclass(frozen=True, slots=True)
class OverlayRule:
    """Scale ``kinds`` by ``factor`` when provider, model, date and served-as all match."""

    name: str
    provider: str
    model: str  # regex, matched at the start of the catalog id (or the override name)
    when: tuple[tuple[str, str], ...]  # Served field == value, all must hold
    factor: Decimal
    kinds: tuple[str, ...]
    source: str
    unless_variant: str | None = None  # skip when the catalog applied this variant itself
    effective_from: date | None = None  # None: since the feature exists
    effective_until: date | None = None  # last day, inclusive
    catalog_only: bool = False

    def applies(self, provider: str, model: str, on: date, served: Served) -> bool:
        return (
            provider == self.provider
            and (self.effective_from is None or on >= self.effective_from)
            and (self.effective_until is None or on <= self.effective_until)
            and re.match(self.model, model) is not None
            and all(served.get(field) == value for field, value in self.when)
        )


RULES: tuple[OverlayRule, ...] = (
    OverlayRule(
        name="anthropic-us-geo",
        provider="anthropic",
        model=CLAUDE_46_PLUS,
        when=(("inference_geo", "us"),),
        factor=Decimal("1.1"),
        kinds=TOKEN_KINDS,
        source=f"US-only inference 1.1x on all token kinds, Claude 4.6+ ({ANTHROPIC_GEO})",
    ),
    OverlayRule(
        name="anthropic-batch-50",
        provider="anthropic",
        model=r"claude-",
        when=(("service_tier", "batch"),),
        factor=Decimal("0.5"),
        kinds=TOKEN_KINDS,
        source=f"Message Batches: all usage at 50%, no catalog batch variant ({ANTHROPIC_BATCH})",
        unless_variant="processing=batch",
    ),
    OverlayRule(
        name="openai-batch-50",
        provider="openai",
        model=r".",
        when=(("service_tier", "batch"),),
        factor=Decimal("0.5"),
        kinds=TOKEN_KINDS,
        source=f"Batch API 50% of standard, catalog has no batch variant ({OPENAI_PRICING})",
        unless_variant="processing=batch",
    ),
    OverlayRule(
        name="openai-flex-50",
        provider="openai",
        model=r".",
        when=(("service_tier", "flex"),),
        factor=Decimal("0.5"),
        kinds=TOKEN_KINDS,
        source=f"Flex at Batch rates (50%), no catalog flex variant ({OPENAI_PRICING})",
        unless_variant="service_tier=flex",
    ),
    OverlayRule(
        name="opus-4.6-4.7-fast-6x",
        provider="anthropic",
        model=r"claude-opus-4-[67](?:[-@]|$)",
        when=(("speed", "fast"),),
        factor=Decimal("6"),
        kinds=TOKEN_KINDS,
        source=f"fast mode $30/$150 on Opus 4.6/4.7, cache multipliers on top ({ANTHROPIC_FAST})",
        unless_variant="speed=fast",
        catalog_only=True,
    ),
    OverlayRule(
        name="opus-4.6-fast-launch-promo",
        provider="anthropic",
        model=r"claude-opus-4-6(?:[-@]|$)",
        when=(("speed", "fast"),),
        factor=Decimal("0.5"),
        kinds=TOKEN_KINDS,
        source=f"fast mode launch promotion, 50% off until 2026-02-16 ({ANTHROPIC_FAST})",
        unless_variant="speed=fast",
        effective_until=date(2026, 2, 15),
        catalog_only=True,
    ),
    OverlayRule(
        name="sonnet-5.5-read-before-cut",
        provider="anthropic",
        model=r"claude-sonnet-5-5(?:[-@]|$)",
        when=(),
        factor=Decimal("2"),
        kinds=("cache_read",),
        source="cache read $0.20/MTok until the cut to $0.10 on 2026-10-07 (platform.claude.com/"
        "docs/en/models/sonnet-5-5/overview snapshot; claudit v1.9.2, PromptFuel v1.0.23)",
        effective_until=date(2026, 10, 6),
        catalog_only=True,
    ),
)

# Models the catalog does not list, priced as the catalog model with the same official price.
ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("anthropic", "claude-mythos-5"): (
        "claude-fable-5",
        f"Mythos 5 = Fable 5 ({ANTHROPIC_PRICING})",
    ),
    ("anthropic", "claude-mythos-5-1"): (
        "claude-fable-5-1",
        f"Mythos 5.1 = Fable 5.1 ({ANTHROPIC_PRICING})",
    ),
}

_DATE_SUFFIX = re.compile(r"-\d{8}$")
_WEB_SEARCH_PER_1000 = Decimal("10")


def alias(provider: str, name: str) -> tuple[str, str] | None:
    """(catalog model, source) for a model the catalog lacks but the overlay knows, or None."""
    return ALIASES.get((provider, _DATE_SUFFIX.sub("", name)))


def fill_gaps(provider: str, rates: dict[str, Rate]) -> dict[str, Rate] | None:
    """``rates`` with every kind present, or None when even input or output is unknown."""
    if "input" not in rates or "output" not in rates:
        return None
    filled = dict(rates)
    for kind, rule in _gap_rules(provider, filled):
        filled.setdefault(kind, rule)
    return filled


def _gap_rules(provider: str, rates: dict[str, Rate]) -> list[tuple[str, Rate]]:
    """The fallback for each kind (applied only where the catalog or override has none)."""
    if provider == "anthropic":
        return [
            ("cache_write_5m", _derived(rates["input"], "1.25", "anthropic-5m-write-1.25x")),
            ("cache_write_1h", _derived(rates["input"], "2", "anthropic-1h-write-2x")),
            ("cache_read", _derived(rates["input"], "0.1", "anthropic-read-0.1x")),
            (WEB_SEARCH, _web_search(ANTHROPIC_PRICING)),
        ]
    write = rates.get("cache_write_5m") or _derived(
        rates["input"], "1", "openai-write-at-input", OPENAI_PRICING
    )
    return [
        ("cache_write_5m", write),
        ("cache_write_1h", write),
        ("cache_read", _derived(rates["input"], "1", "openai-read-at-input", OPENAI_PRICING)),
        (WEB_SEARCH, _web_search(OPENAI_PRICING)),
    ]


def _derived(rate: Rate, factor: str, rule: str, url: str = ANTHROPIC_PRICING) -> Rate:
    return rate.scaled(Decimal(factor), f"x{factor} of input per overlay {rule} ({url})")


def _web_search(url: str) -> Rate:
    return Rate(_WEB_SEARCH_PER_1000, f"overlay web-search-10: $10 per 1000 searches ({url})")


def apply_rules(
    rates: dict[str, Rate],
    key: tuple[str, str, date, Served],
    variants: frozenset[str],
    from_catalog: bool,
) -> dict[str, Rate]:
    """``rates`` scaled by every rule that matches (provider, model, day, served)."""
    provider, model, on, served = key
    scaled = dict(rates)
    for rule in RULES:
        if rule.unless_variant in variants or (rule.catalog_only and not from_catalog):
            continue
        if rule.applies(provider, model, on, served):
            note = f"x{rule.factor} overlay {rule.name}: {rule.source}"
            for kind in rule.kinds:
                scaled[kind] = scaled[kind].scaled(rule.factor, note)
    return scaled
