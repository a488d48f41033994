"""OpenAI's organization usage and costs pages read into typed lines (``providers.openai_admin``)
and the page's shape picking the reader (``providers.billing``). Pages as OpenAI's reference
shows them (platform.openai.com/docs/api-reference/usage)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from proxy.providers.admin import COST, USAGE, CostLine, PageError, UsageLine
from proxy.providers.billing import read_page

DAY = 1_790_812_800  # 2026-10-01T00:00:00Z


def page(results: list[dict[str, Any]], key: str = "results") -> dict[str, Any]:
    bucket = {"object": "bucket", "start_time": DAY, "end_time": DAY + 86_400, key: results}
    return {"object": "page", "data": [bucket], "has_more": True, "next_page": "page_AAAA"}


def cost(line_item: str | None, value: object) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": value, "currency": "usd"},
        "line_item": line_item,
        "project_id": "proj_abc",
    }


def test_a_usage_line_counts_cached_and_cache_write_tokens_out_of_input() -> None:
    line = {
        "object": "organization.usage.completions.result",
        "input_tokens": 1000,
        "input_cached_tokens": 400,
        "input_cache_write_tokens": 100,
        "input_cache_write_12h_tokens": 50,
        "output_tokens": 30,
        "num_model_requests": 5,
        "project_id": "proj_example",
        "model": "gpt-4.1-2025-04-14",
        "user_id": None,
        "api_key_id": None,
        "batch": None,
        "service_tier": None,
    }
    read = read_page(page([line]))
    assert (read.provider, read.endpoint, read.has_more, read.next_page) == (
        "openai",
        USAGE,
        True,
        "page_AAAA",
    )
    (bucket,) = read.buckets
    assert bucket.starting_at == datetime(2026, 10, 1, tzinfo=UTC)
    (usage,) = bucket.lines
    assert isinstance(usage, UsageLine)
    assert usage.model == "gpt-4.1-2025-04-14"
    assert usage.tokens == {
        "input": 450,
        "cache_write_5m": 100,
        "cache_write_1h": 50,
        "cache_read": 400,
        "output": 30,
    }


def test_cost_line_items_name_the_model_and_kind_or_stay_costs_without_a_model() -> None:
    text = json.dumps(
        page(
            [
                cost("gpt-4o-2024-08-06, input", 0.06),
                cost("gpt-4o-2024-08-06, cached input", 0.0125),
                cost("ft-gpt-4o-2024-08-06, output", 1.2),
                cost("evals | gpt-4o-mini, input", 0.5),
                cost("web search tool calls", 0.025),
                cost(None, 2.0),
            ],
            key="result",  # the generated reference's name for costs buckets
        )
    )
    read = read_page(json.loads(text, parse_float=Decimal))
    assert read.endpoint == COST
    lines = read.buckets[0].lines
    assert all(isinstance(line, CostLine) for line in lines)
    got = [
        (line.cost_type, line.model, line.token_kind, line.amount_usd, line.currency)
        for line in lines
        if isinstance(line, CostLine)
    ]
    assert got == [
        ("tokens", "gpt-4o-2024-08-06", "input", Decimal("0.06"), "USD"),
        ("tokens", "gpt-4o-2024-08-06", "cache_read", Decimal("0.0125"), "USD"),
        ("tokens", "ft-gpt-4o-2024-08-06", "output", Decimal("1.2"), "USD"),
        ("evals | gpt-4o-mini, input", None, None, Decimal("0.5"), "USD"),
        ("web search tool calls", None, None, Decimal("0.025"), "USD"),
        ("not by line item", None, None, Decimal("2.0"), "USD"),
    ]


def test_an_amount_decoded_as_a_float_keeps_the_digits_openai_wrote() -> None:
    (line,) = read_page(page([cost("gpt-4.1, output", 0.1 + 0.2)])).buckets[0].lines
    assert isinstance(line, CostLine)
    assert line.amount_usd == Decimal("0.30000000000000004")  # repr, not the binary expansion


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (page([]), "no result line tells whether this is a usage or a costs page"),
        ({"object": "page", "data": 3}, "an OpenAI page without a data list"),
        (
            page([{"object": "organization.usage.images.result", "images": 2}]),
            "an OpenAI images usage page: only completions and embeddings usage and costs are",
        ),
        (
            {**page([cost("x, input", 1)]), "has_more": "yes"},
            "has_more is not true or false",
        ),
        (page([cost("x, input", "1")]), "data[0].results[0].amount.value is not a number"),
        (
            page([{"object": "organization.costs.result", "amount": None}]),
            "data[0].results[0].amount is not an object",
        ),
    ],
)
def test_what_is_not_a_readable_openai_page_is_one_line(broken: object, message: str) -> None:
    with pytest.raises(PageError, match=re.escape(message)) as raised:
        read_page(broken)
    assert "\n" not in str(raised.value)


def test_the_shape_picks_the_reader_and_a_named_provider_overrides_it() -> None:
    anthropic = {"data": [], "has_more": False, "next_page": None}
    with pytest.raises(PageError, match="no result line tells"):
        read_page(anthropic)
    with pytest.raises(PageError, match="not an OpenAI page"):
        read_page(anthropic, provider="openai")
    with pytest.raises(PageError, match="an OpenAI organization usage/costs page, not an Anth"):
        read_page(page([cost("x, input", 1)]), provider="anthropic")
