"""Every priced event equals the figure computed by hand from the published $/MTok rates.

Rates below are literals copied from the providers' price tables (Anthropic's and OpenAI's
pricing pages); cache writes are derived by hand with the published multipliers (5 m x1.25,
1 h x2), so a catalog change that moves a price makes these tests fail loudly.
"""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D
from typing import TypedDict

import pytest
from genai_prices.types import ModelInfo

from proxy.pricing import Pricer, RateCard
from proxy.pricing.catalog import Catalog, normalize_model
from proxy.usage import Cost, Usage, UsageEvent
from tests.factories import make_event

NOV = datetime(2026, 11, 1, 12, tzinfo=UTC)
SEPT = datetime(2026, 9, 1, 12, tzinfo=UTC)
MTOK = D(1_000_000)


def usage(**counts: int) -> Usage:
    """All five token kinds plus two web searches; reasoning is inside output."""
    base = {
        "input": 1_000,
        "cache_write_5m": 2_000,
        "cache_write_1h": 3_000,
        "cache_read": 40_000,
        "output": 5_000,
        "web_search_requests": 2,
        "reasoning": 1_200,
    }
    return Usage(**{**base, **counts})


def price(pricer: Pricer, event: UsageEvent) -> Cost:
    """The cost of ``event``, a model the catalog (or the overrides) knows."""
    cost = pricer.price(event)
    assert cost is not None
    return cost


def rate_card(pricer: Pricer, provider: str, model: str, at: datetime, **served: str) -> RateCard:
    """The rate card of a model the catalog (or the overrides) knows."""
    card = pricer.rate_card(provider, model, at, **served)
    assert card is not None
    return card


def event(
    model: str | None,
    used: Usage | None = None,
    *,
    provider: str = "anthropic",
    at: datetime = NOV,
    tier: str | None = None,
    geo: str | None = None,
    speed: str | None = None,
) -> UsageEvent:
    return make_event(
        model=model,
        usage=used or usage(),
        service_tier=tier,
        inference_geo=geo,
        speed=speed,
        provider=provider,
        started_at=at,
        priced=False,
    )


def by_hand(
    inp: str,
    out: str,
    read: str,
    *,
    w5: str | None = None,
    w1h: str | None = None,
    factor: str = "1",
    web: str = "10",
    used: Usage | None = None,
) -> D:
    """Dollars for ``used`` at the given $/MTok; ``factor`` scales token kinds (not searches)."""
    u = used or usage()
    i, o, r, f = D(inp), D(out), D(read), D(factor)
    five = i * D("1.25") if w5 is None else D(w5)
    hour = i * 2 if w1h is None else D(w1h)
    tokens = (
        u.input * i
        + u.cache_write_5m * five
        + u.cache_write_1h * hour
        + u.cache_read * r
        + u.output * o
    )
    return tokens * f / MTOK + u.web_search_requests * D(web) / 1000


class Served(TypedDict, total=False):
    """How an exchange was served (the MODIFIERS column): keyword arguments of ``event``."""

    tier: str
    geo: str
    speed: str


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


# (model id as the API returns it, input, output, cache read) in $/MTok, Anthropic's prices.
ANTHROPIC = [
    ("claude-opus-4-5-20251101", "5", "25", "0.50"),
    ("claude-opus-4-6", "5", "25", "0.50"),
    ("claude-opus-4-7", "5", "25", "0.50"),
    ("claude-opus-4-8", "5", "25", "0.50"),
    ("claude-opus-5", "5", "25", "0.50"),
    ("claude-opus-5-5", "4", "20", "0.20"),
    ("claude-sonnet-4-5-20250929", "3", "15", "0.30"),
    ("claude-sonnet-4-6", "3", "15", "0.30"),
    ("claude-sonnet-5", "2", "10", "0.20"),
    ("claude-sonnet-5-5", "2", "10", "0.10"),
    ("claude-haiku-4-5-20251001", "1", "5", "0.10"),
    ("claude-haiku-5-5", "0.10", "0.50", "0.01"),
    ("claude-fable-5", "10", "50", "1"),
    ("claude-fable-5-1", "10", "50", "0.25"),
    ("claude-fable-5-2", "8", "40", "0.20"),
    ("claude-mythos-5", "10", "50", "1"),
    ("claude-mythos-5-1", "10", "50", "0.25"),
    ("claude-mythos-5-2", "8", "40", "0.20"),
    ("claude-opus-4-1-20250805", "15", "75", "1.50"),
    ("claude-sonnet-4-20250514", "3", "15", "0.30"),
    ("claude-3-5-haiku-20241022", "0.80", "4", "0.08"),
]


@pytest.mark.parametrize(("model", "inp", "out", "read"), ANTHROPIC)
def test_anthropic_models_cost_what_the_price_table_says(
    pricer: Pricer, model: str, inp: str, out: str, read: str
) -> None:
    cost = price(pricer, event(model))
    assert cost is not None
    assert cost.total == by_hand(inp, out, read)
    assert cost.by_kind["web_search"] == D("0.02")


# (model, input, output, cached input, cache write) in $/MTok, developers.openai.com pricing.
# Cache writes are billed at the input rate before GPT-5.6, at 1.25x input from GPT-5.6.
OPENAI = [
    ("gpt-5", "1.25", "10", "0.125", "1.25"),
    ("gpt-5-mini", "0.25", "2", "0.025", "0.25"),
    ("gpt-4.1", "2", "8", "0.50", "2"),
    ("gpt-4o", "2.50", "10", "1.25", "2.50"),
    ("o3", "2", "8", "0.50", "2"),
    ("o4-mini", "1.10", "4.40", "0.275", "1.10"),
    ("gpt-5.6-sol", "4", "20", "0.40", "5"),
]


@pytest.mark.parametrize(("model", "inp", "out", "read", "write"), OPENAI)
def test_openai_models_cost_what_the_price_table_says(
    pricer: Pricer, model: str, inp: str, out: str, read: str, write: str
) -> None:
    cost = price(pricer, event(model, provider="openai"))
    assert cost is not None
    assert cost.total == by_hand(inp, out, read, w5=write, w1h=write)


ANT, OAI = "anthropic", "openai"
MAY, FEB10, JUL = (datetime(2026, m, d, tzinfo=UTC) for m, d in ((5, 1), (2, 10), (7, 1)))

# One case per line reads as a table: keep the formatter from spreading each over eight lines.
# fmt: off
MODIFIERS = [
    # (what, provider, model, at, served, expected)
    ("batch, catalog variant", ANT, "claude-opus-5", NOV, {"tier": "batch"},
     by_hand("5", "25", "0.50", factor="0.5")),
    ("batch before catalog history", ANT, "claude-opus-5", SEPT, {"tier": "batch"},
     by_hand("5", "25", "0.50", factor="0.5")),
    ("batch, retired model", ANT, "claude-opus-4-1-20250805", NOV, {"tier": "batch"},
     by_hand("15", "75", "1.50", factor="0.5")),
    ("batch with Haiku 5.5", ANT, "claude-haiku-5-5", NOV, {"tier": "batch"},
     by_hand("0.10", "0.50", "0.01", factor="0.5")),
    ("US geo, Opus 5", ANT, "claude-opus-5", NOV, {"geo": "us"},
     by_hand("5", "25", "0.50", factor="1.1")),
    ("US geo, Sonnet 4.6", ANT, "claude-sonnet-4-6", NOV, {"geo": "us"},
     by_hand("3", "15", "0.30", factor="1.1")),
    ("US geo, Haiku 5.5", ANT, "claude-haiku-5-5", NOV, {"geo": "us"},
     by_hand("0.10", "0.50", "0.01", factor="1.1")),
    ("US geo, Fable 5.2", ANT, "claude-fable-5-2", NOV, {"geo": "us"},
     by_hand("8", "40", "0.20", factor="1.1")),
    ("US geo ignored before 4.6: Opus 4.5", ANT, "claude-opus-4-5", NOV, {"geo": "us"},
     by_hand("5", "25", "0.50")),
    ("US geo ignored before 4.6: Haiku 4.5", ANT, "claude-haiku-4-5", NOV, {"geo": "us"},
     by_hand("1", "5", "0.10")),
    ("global geo", ANT, "claude-opus-5", NOV, {"geo": "global"},
     by_hand("5", "25", "0.50")),
    ("batch and US geo", ANT, "claude-opus-5", NOV, {"tier": "batch", "geo": "us"},
     by_hand("5", "25", "0.50", factor="0.55")),
    ("fast, Opus 5", ANT, "claude-opus-5", NOV, {"speed": "fast"},
     by_hand("10", "50", "1")),
    ("fast, Opus 4.8", ANT, "claude-opus-4-8", NOV, {"speed": "fast"},
     by_hand("10", "50", "1")),
    ("fast, Opus 5.5", ANT, "claude-opus-5-5", NOV, {"speed": "fast"},
     by_hand("8", "40", "0.40")),
    ("fast, Fable 5.2", ANT, "claude-fable-5-2", NOV, {"speed": "fast"},
     by_hand("16", "80", "0.40")),
    ("fast and US geo", ANT, "claude-opus-5", NOV, {"speed": "fast", "geo": "us"},
     by_hand("10", "50", "1", factor="1.1")),
    ("fast, Opus 4.6 (6x)", ANT, "claude-opus-4-6", MAY, {"speed": "fast"},
     by_hand("30", "150", "3")),
    ("fast, Opus 4.6 launch promo", ANT, "claude-opus-4-6", FEB10, {"speed": "fast"},
     by_hand("15", "75", "1.50")),
    ("fast, Opus 4.7 (6x)", ANT, "claude-opus-4-7", JUL, {"speed": "fast"},
     by_hand("30", "150", "3")),
    ("standard speed", ANT, "claude-opus-5", NOV, {"speed": "standard"},
     by_hand("5", "25", "0.50")),
    ("Sonnet 5.5 read before the cut", ANT, "claude-sonnet-5-5", SEPT, {},
     by_hand("2", "10", "0.20")),
    ("Sonnet 5.5 batch before the cut", ANT, "claude-sonnet-5-5", SEPT, {"tier": "batch"},
     by_hand("2", "10", "0.20", factor="0.5")),
    ("OpenAI batch, catalog variant", OAI, "gpt-5", NOV, {"tier": "batch"},
     by_hand("1.25", "10", "0.125", w5="1.25", w1h="1.25", factor="0.5")),
    ("OpenAI batch before catalog history", OAI, "gpt-5", SEPT, {"tier": "batch"},
     by_hand("1.25", "10", "0.125", w5="1.25", w1h="1.25", factor="0.5")),
    # The Batch table publishes no cached-input rate for GPT-4.1: cached input stays $0.50.
    ("OpenAI batch, no cached batch rate", OAI, "gpt-4.1", NOV, {"tier": "batch"},
     by_hand("1", "4", "0.50", w5="1", w1h="1")),
    ("OpenAI flex", OAI, "gpt-5", NOV, {"tier": "flex"},
     by_hand("0.625", "5", "0.0625", w5="0.625", w1h="0.625")),
    ("OpenAI flex before catalog history", OAI, "gpt-5", SEPT, {"tier": "flex"},
     by_hand("0.625", "5", "0.0625", w5="0.625", w1h="0.625")),
    ("OpenAI priority", OAI, "gpt-5", NOV, {"tier": "priority"},
     by_hand("2.50", "20", "0.25", w5="2.50", w1h="2.50")),
    ("OpenAI default tier", OAI, "gpt-5", NOV, {"tier": "default"},
     by_hand("1.25", "10", "0.125", w5="1.25", w1h="1.25")),
]
# fmt: on


@pytest.mark.parametrize(
    ("provider", "model", "at", "served", "expected"),
    [row[1:] for row in MODIFIERS],
    ids=[row[0] for row in MODIFIERS],
)
def test_served_as_modifiers(
    pricer: Pricer, provider: str, model: str, at: datetime, served: Served, expected: D
) -> None:
    cost = price(pricer, event(model, provider=provider, at=at, **served))
    assert cost is not None
    assert cost.total == expected


def test_haiku_5_5_prompt_over_100k_bills_every_token_at_the_higher_band(pricer: Pricer) -> None:
    over = usage(input=1, cache_read=90_000, cache_write_5m=5_000, cache_write_1h=5_000)
    at_limit = usage(input=0, cache_read=90_000, cache_write_5m=5_000, cache_write_1h=5_000)
    assert over.total_input() == 100_001
    high = price(pricer, event("claude-haiku-5-5", over))
    low = price(pricer, event("claude-haiku-5-5", at_limit))
    assert high.total == by_hand("0.50", "2.50", "0.05", used=over)
    assert low.total == by_hand("0.10", "0.50", "0.01", used=at_limit)


def test_long_context_tiers_follow_the_catalog_history(pricer: Pricer) -> None:
    big = usage(input=200_001)
    march = datetime(2026, 3, 1, tzinfo=UTC)
    sonnet = price(pricer, event("claude-sonnet-4-5-20250929", big, at=march))
    opus_then = price(pricer, event("claude-opus-4-6", big, at=march))
    opus_now = price(pricer, event("claude-opus-4-6", big, at=NOV))
    assert sonnet.total == by_hand("6", "22.50", "0.60", used=big)
    assert opus_then.total == by_hand("10", "37.50", "1", used=big)
    assert opus_now.total == by_hand("5", "25", "0.50", used=big)


def test_by_kind_breakdown_sticker_and_versions(pricer: Pricer) -> None:
    cost = price(pricer, event("claude-opus-5"))
    assert cost.by_kind == {
        "input": D("0.005"),
        "cache_write_5m": D("0.0125"),
        "cache_write_1h": D("0.03"),
        "cache_read": D("0.02"),
        "output": D("0.125"),
        "web_search": D("0.02"),
    }
    assert cost.total == sum(cost.by_kind.values()) == D("0.2125")
    # No caching: all 46,000 input tokens at $5 and 5,000 output at $25, same two searches.
    assert cost.sticker == (46_000 * D(5) + 5_000 * D(25)) / MTOK + D("0.02") == D("0.375")
    assert (
        cost.price_version
        == pricer.version
        == ("genai-prices 0.2.3+overlay 2026-11-26+overrides none")
    )
    assert cost.catalog_model == "claude-opus-5"


def test_kinds_without_tokens_are_stored_as_an_exact_rounded_zero(pricer: Pricer) -> None:
    # Zero kinds skip the arithmetic but keep every key, with the value ``rate * 0`` rounds to.
    only_output = Usage(output=1_000)
    cost = price(pricer, event("claude-opus-5", only_output))
    assert [(kind, str(dollars)) for kind, dollars in cost.by_kind.items()] == [
        ("input", "0E-10"),
        ("cache_write_5m", "0E-10"),
        ("cache_write_1h", "0E-10"),
        ("cache_read", "0E-10"),
        ("output", "0.0250000000"),
        ("web_search", "0E-10"),
    ]
    assert str(cost.total) == str(cost.sticker) == "0.0250000000"
    searches_only = price(pricer, event("claude-opus-5", Usage(web_search_requests=3)))
    assert str(searches_only.total) == str(searches_only.sticker) == "0.0300000000"


def test_reasoning_tokens_are_not_priced_twice(pricer: Pricer) -> None:
    with_reasoning = price(pricer, event("claude-opus-5", usage(reasoning=4_000)))
    without = price(pricer, event("claude-opus-5", usage(reasoning=0)))
    assert with_reasoning.total == without.total == D("0.2125")


def test_opus_class_agentic_mix_blends_to_about_a_dollar_per_mtok(pricer: Pricer) -> None:
    # 300:1 input:output, 92% of input read from cache, the rest mostly 5-minute writes.
    mix = usage(
        input=4_000,
        cache_write_5m=20_000,
        cache_write_1h=0,
        cache_read=276_000,
        output=1_000,
        web_search_requests=0,
    )
    assert mix.total_input() == 300 * mix.output
    assert D(mix.cache_read) / mix.total_input() == D("0.92")
    cost = price(pricer, event("claude-opus-4-6", mix))
    assert (
        cost.total == (4_000 * D(5) + 20_000 * D("6.25") + 276_000 * D("0.5") + 1_000 * 25) / MTOK
    )
    assert cost.total == D("0.308")
    blended = cost.total * MTOK / mix.total_tokens()
    assert blended.quantize(D("0.01")) == D("1.02")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("claude-opus-4-6[1m]", "claude-opus-4-6"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("us.anthropic.claude-opus-5-v1:0", "claude-opus-5"),
        ("CLAUDE-OPUS-5", "claude-opus-5"),
        ("openai/gpt-5", "gpt-5"),
    ],
)
def test_model_names_are_normalized_before_lookup(pricer: Pricer, raw: str, expected: str) -> None:
    assert normalize_model(raw) == expected
    provider = "openai" if "gpt" in raw else "anthropic"
    assert (
        price(pricer, event(raw, provider=provider)).total
        == price(pricer, event(expected, provider=provider)).total
    )


@pytest.mark.parametrize(
    ("provider", "model"),
    [("anthropic", "claude-imaginary-9"), ("openai", "claude-opus-5"), ("anthropic", None)],
)
def test_unknown_model_is_unpriced_never_zero(
    pricer: Pricer, provider: str, model: str | None
) -> None:
    assert pricer.price(event(model, provider=provider)) is None


def test_request_time_is_taken_in_utc(pricer: Pricer) -> None:
    # 23:00 at UTC-2 on Oct 6 is Oct 7 in UTC: Sonnet 5.5 reads already cost the cut price.
    late = datetime(2026, 10, 6, 23, tzinfo=timezone(timedelta(hours=-2)))
    cost = price(pricer, event("claude-sonnet-5-5", at=late))
    assert cost.by_kind["cache_read"] == 40_000 * D("0.10") / MTOK


def test_rate_card_names_the_source_of_every_rate(pricer: Pricer) -> None:
    card = rate_card(pricer, "anthropic", "claude-opus-5", NOV, inference_geo="us", speed="fast")
    assert card.catalog_model == "claude-opus-5"
    assert card.rates["output"].base == D("55.0")
    source = card.rates["output"].source
    assert source.startswith("genai-prices 0.2.3 claude-opus-5 [speed=fast] (https://")
    assert "overlay anthropic-us-geo" in source
    legacy = rate_card(pricer, "anthropic", "claude-2", NOV)
    assert "overlay anthropic-1h-write-2x" in legacy.rates["cache_write_1h"].source
    assert legacy.rates["cache_write_1h"].base == D(16)
    lines = card.lines()
    assert lines[0].startswith("anthropic claude-opus-5 on 2026-11-01")
    assert "$55 per MTok" in lines[5]
    assert pricer.rate_card("anthropic", "claude-imaginary-9", NOV) is None


def test_overlay_premises_still_hold_in_the_pinned_catalog() -> None:
    """Each overlay rule fills a gap of genai-prices 0.2.3: when a new pin fills one, drop it."""
    catalog = Catalog()

    def find(model: str) -> ModelInfo:
        info = catalog.find("anthropic", model)
        assert info is not None
        return info

    assert catalog.find("anthropic", "claude-mythos-5") is None  # alias mythos-5 -> fable-5
    assert catalog.find("anthropic", "claude-mythos-5-1") is None
    for model in ("claude-opus-4-6", "claude-opus-4-7"):  # opus-4.6-4.7-fast-6x
        labels = {
            ",".join(f"{k}={v}" for k, v in variant.when.items())
            for variant in find(model).price_variants or ()
        }
        assert "speed=fast" not in labels
    sonnet = find("claude-sonnet-5-5")  # sonnet-5.5-read-before-cut
    assert sonnet.get_prices(SEPT).cache_read_mtok == D("0.1")
    opus = find("claude-opus-5")  # anthropic-batch-50
    october_13 = datetime(2026, 10, 13, tzinfo=UTC)
    assert opus.get_prices(october_13, {"processing": "batch"}).input_mtok == D(5)
