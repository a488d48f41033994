"""Company overrides: dated discounts and private models change the dollars; bad files say where."""

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path
from textwrap import dedent

import pytest

from proxy.pricing import OverridesError, Pricer, RateCard, load_overrides
from proxy.usage import Cost, Usage, UsageEvent
from tests.factories import make_event

NOV = datetime(2026, 11, 20, 12, tzinfo=UTC)
MTOK = D(1_000_000)
USAGE = {
    "input": 1_000,
    "cache_write_5m": 2_000,
    "cache_write_1h": 3_000,
    "cache_read": 40_000,
    "output": 5_000,
    "web_search_requests": 2,
}


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
    model: str,
    *,
    provider: str = "anthropic",
    at: datetime = NOV,
    tier: str | None = None,
    geo: str | None = None,
) -> UsageEvent:
    return make_event(
        model=model,
        usage=Usage(**USAGE),
        service_tier=tier,
        inference_geo=geo,
        provider=provider,
        started_at=at,
        priced=False,
    )


def by_hand(
    inp: str, out: str, read: str, w5: str, w1h: str, *, factor: str = "1", web: str = "10"
) -> D:
    """Dollars of USAGE at these $/MTok rates; ``factor`` applies to everything (discounts)."""
    u = USAGE
    tokens = (
        u["input"] * D(inp)
        + u["cache_write_5m"] * D(w5)
        + u["cache_write_1h"] * D(w1h)
        + u["cache_read"] * D(read)
        + u["output"] * D(out)
    )
    return (tokens / MTOK + u["web_search_requests"] * D(web) / 1000) * D(factor)


OPUS_45 = by_hand("5", "25", "0.5", "6.25", "10")  # list price, $0.2125


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(dedent(text).lstrip())
    return path


def pricer_for(tmp_path: Path, text: str) -> Pricer:
    return Pricer(load_overrides(write(tmp_path, text)))


MSA = """
    [[discount]]
    provider = "anthropic"
    models = "*"
    percent = 12
    effective_from = 2026-01-01
    source = "MSA 2026 amendment 3"
"""


def test_discount_applies_from_its_effective_date_only(tmp_path: Path) -> None:
    pricer = pricer_for(tmp_path, MSA)
    before = price(pricer, event("claude-opus-4-5", at=datetime(2025, 12, 31, 23, 59, tzinfo=UTC)))
    after = price(pricer, event("claude-opus-4-5", at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert before.total == OPUS_45 == D("0.2125")
    assert after.total == by_hand("5", "25", "0.5", "6.25", "10", factor="0.88") == D("0.187")
    assert price(pricer, event("gpt-5", provider="openai")).total == by_hand(
        "1.25", "10", "0.125", "1.25", "1.25"
    )


def test_discount_comes_after_batch_and_geo(tmp_path: Path) -> None:
    pricer = pricer_for(tmp_path, MSA)
    cost = price(pricer, event("claude-opus-5", tier="batch", geo="us"))
    tokens = by_hand("5", "25", "0.5", "6.25", "10", web="0") * D("0.55")
    assert cost.total == (tokens + D("0.02")) * D("0.88")


def test_discount_model_globs_lists_and_end_dates(tmp_path: Path) -> None:
    pricer = pricer_for(
        tmp_path,
        """
        [[discount]]
        provider = "anthropic"
        models = "claude-opus-*"
        percent = 10
        effective_from = 2026-01-01
        source = "Opus volume tier"

        [[discount]]
        provider = "anthropic"
        models = ["claude-haiku-4-5", "claude-sonnet-5"]
        percent = "12.5"
        effective_from = 2026-01-01
        effective_until = 2026-06-30
        source = "H1 promotion"
    """,
    )
    june_30, july_1 = datetime(2026, 6, 30, 23, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    assert price(pricer, event("claude-opus-4-5-20251101")).total == OPUS_45 * D("0.9")
    assert price(pricer, event("claude-sonnet-4-6")).total == by_hand("3", "15", "0.3", "3.75", "6")
    haiku = by_hand("1", "5", "0.1", "1.25", "2")
    # The dated id matches the glob through the catalog id claude-haiku-4-5.
    assert price(pricer, event("claude-haiku-4-5-20251001", at=june_30)).total == haiku * D("0.875")
    assert price(pricer, event("claude-haiku-4-5-20251001", at=july_1)).total == haiku


def test_active_discounts_compound(tmp_path: Path) -> None:
    pricer = pricer_for(
        tmp_path,
        MSA
        + """
        [[discount]]
        provider = "anthropic"
        models = "*"
        percent = 5
        effective_from = 2026-06-01
        source = "prepayment credit"
    """,
    )
    assert price(pricer, event("claude-opus-4-5")).total == OPUS_45 * D("0.88") * D("0.95")


PRIVATE = """
    [[model]]
    provider = "anthropic"
    name = "claude-private-x"
    input = "3"
    output = "15"
    cache_read = "0.3"
    cache_write_5m = "3.75"
    cache_write_1h = "6"
    effective_from = 2026-11-01
    source = "vendor quote 2026-10-28"
"""


def test_private_model_is_priced_from_its_effective_date(tmp_path: Path) -> None:
    path = write(tmp_path, PRIVATE)
    pricer = Pricer(load_overrides(path))
    cost = price(pricer, event("claude-private-x"))
    assert cost.total == by_hand("3", "15", "0.3", "3.75", "6")
    assert cost.catalog_model is None
    assert pricer.price(event("claude-private-x", at=datetime(2026, 10, 31, tzinfo=UTC))) is None
    card = rate_card(pricer, "anthropic", "claude-private-x", NOV)
    assert (
        card.rates["input"].source
        == f"override 'vendor quote 2026-10-28' from 2026-11-01 ({path}:1)"
    )
    assert "overlay web-search-10" in card.rates["web_search"].source


def test_model_correction_wins_over_the_catalog_from_its_date(tmp_path: Path) -> None:
    pricer = pricer_for(
        tmp_path,
        """
        [[model]]
        provider = "anthropic"
        name = "claude-opus-5"
        input = 4
        output = 20
        effective_from = 2026-11-15
        source = "negotiated rate card"

        [[model]]
        provider = "anthropic"
        name = "claude-opus-5"
        input = 3
        output = 15
        effective_from = 2026-12-01
        source = "negotiated rate card v2"
    """,
    )
    early = price(pricer, event("claude-opus-5", at=datetime(2026, 11, 14, tzinfo=UTC)))
    corrected = price(pricer, event("claude-opus-5"))
    december = price(pricer, event("claude-opus-5", at=datetime(2026, 12, 2, tzinfo=UTC)))
    assert early.total == by_hand("5", "25", "0.5", "6.25", "10")
    # Cache prices not given: Anthropic's multipliers of the override input (1.25x, 2x, 0.1x).
    assert corrected.total == by_hand("4", "20", "0.4", "5", "8")
    assert corrected.catalog_model == "claude-opus-5"
    assert december.total == by_hand("3", "15", "0.3", "3.75", "6")
    us_batch = price(pricer, event("claude-opus-5", tier="batch", geo="us"))
    assert us_batch.total == by_hand("4", "20", "0.4", "5", "8", web="0") * D("0.55") + D("0.02")


def test_rate_card_and_version_name_the_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, MSA)
    pricer = Pricer(load_overrides(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert pricer.version == f"genai-prices 0.2.3+overlay 2026-11-26+overrides {digest}"
    source = rate_card(pricer, "anthropic", "claude-opus-5", NOV).rates["input"].source
    assert source.endswith(
        f"-12% override discount 'MSA 2026 amendment 3' from 2026-01-01 ({path}:1)"
    )


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(OverridesError) as caught:
        load_overrides(path)
    prefix = f"{path}:"
    assert all(error.startswith(prefix) for error in caught.value.errors)
    assert str(caught.value) == "\n".join(caught.value.errors)
    return [error.removeprefix(prefix) for error in caught.value.errors]


MODEL_ERRORS = [
    (
        'inptu = "3"',
        "8: [[model]] unknown field 'inptu' (allowed: provider, name, input, output, "
        "cache_read, cache_write_5m, cache_write_1h, web_search, effective_from, source)",
    ),
    ('cache_read = "-0.3"', "8: [[model]] 'cache_read' must be a non-negative price, got '-0.3'"),
    ('cache_read = "cheap"', "8: [[model]] 'cache_read' must be a non-negative price, got 'cheap'"),
    ("web_search = true", "8: [[model]] 'web_search' must be a non-negative price, got True"),
    (
        'cache_write_5m = "3.75"\ncache_write_1h = "3"',
        "1: [[model]] cache_write_1h (3) is cheaper than cache_write_5m (3.75)",
    ),
]


@pytest.mark.parametrize(("extra", "message"), MODEL_ERRORS)
def test_model_entry_errors(tmp_path: Path, extra: str, message: str) -> None:
    text = f"""[[model]]
provider = "anthropic"
name = "claude-private-x"
input = "3"
output = "15"
effective_from = 2026-11-01
source = "quote"
{extra}
"""
    assert errors_of(tmp_path, text) == [message]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("effective_from = 2026-01-01", "1: [[discount]] missing required field 'source'"),
        ('source = "MSA"', "1: [[discount]] missing required field 'effective_from'"),
        (
            'source = "MSA"\neffective_from = "2026-13-01"',
            "6: [[discount]] 'effective_from' must be a date like 2026-01-01, got '2026-13-01'",
        ),
        (
            'source = "MSA"\neffective_from = 2026-01-01T09:00:00',
            "6: [[discount]] 'effective_from' must be a date like 2026-01-01, got "
            "datetime.datetime(2026, 1, 1, 9, 0)",
        ),
        (
            'source = "MSA"\neffective_from = 2026-06-01\neffective_until = 2026-05-31',
            "7: [[discount]] 'effective_until' 2026-05-31 is before 'effective_from'",
        ),
    ],
)
def test_discount_entry_errors(tmp_path: Path, fields: str, message: str) -> None:
    text = f'[[discount]]\nprovider = "anthropic"\nmodels = "*"\npercent = 12\n{fields}\n'
    assert errors_of(tmp_path, text) == [message]


def test_every_error_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    """Each error names the line of the field at fault (it named the entry's header before, so
    a file starting with its entry said ':1' for everything: issue 15, 2)."""
    errors = errors_of(
        tmp_path,
        """
        # company prices
        [[discount]]
        provider = "anthropic"
        models = "*"
        percent = 12
        effective_from = 2026-01-01
        source = "MSA 2026 amendment 3"

        [[discount]]
        provider = "azure"
        models = []
        percent = 150
        effective_from = 2026-01-01
        source = "typo"

        [[model]]
        provider = "openai"
        name = "gpt-private"
        input = "-1"
        output = "8"
        effective_from = 2026-01-01

        [[discout]]
        percent = 5
    """,
    )
    assert errors == [
        "23: unknown table 'discout' (expected [[model]] or [[discount]])",
        "16: [[model]] missing required field 'source'",
        "19: [[model]] 'input' must be a non-negative price, got '-1'",
        "12: [[discount]] 'percent' must be above 0 and at most 100, got 150",
        "11: [[discount]] 'models' must be \"*\", a glob or a list of them, got []",
        "10: [[discount]] 'provider' must be one of anthropic, openai, got 'azure'",
    ]


def test_duplicate_model_entries_are_refused(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, PRIVATE + "\n" + PRIVATE)
    assert errors == [f"13: [[model]] duplicates the entry at {tmp_path / 'prices.toml'}:1"]


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_bytes(b"\xef\xbb\xbf" + PRIVATE.encode())
    assert load_overrides(path).model_for("anthropic", "claude-private-x", date(2026, 12, 1))


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, '[[discount]]\nprovider = "anthropic"\neffective_from = 2026-13-01\n'
    )
    assert len(errors) == 1
    assert errors[0].startswith("3: invalid TOML: ")


def test_missing_file_is_an_overrides_error(tmp_path: Path) -> None:
    with pytest.raises(OverridesError, match="cannot read prices file"):
        load_overrides(tmp_path / "absent.toml")
