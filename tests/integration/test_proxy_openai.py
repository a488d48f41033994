"""The proxy end to end: the real openai SDK -> tokenmeter /openai/v1 -> a fake OpenAI on loopback.

Dollar figures are computed here by hand from OpenAI's published per-MTok rates
(developers.openai.com/api/docs/pricing): gpt-5 $1.25 input, $0.125 cached input, $10 output;
gpt-4.1 $2 / $0.50 / $8. ``test_catalog_has_the_published_rates`` checks the catalog agrees.
OpenAI's prompt tokens include cached ones: the fake's default chat usage (2006 prompt, 1920
cached, 300 completion of which 192 reasoning) is 86 input + 1920 cache read + 300 output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import openai
import pytest

from proxy.pricing import Pricer
from tests.conftest import Proxy
from tests.fakes.openai_upstream import TEXT, TOOL_ARGUMENTS, FakeOpenAI, error_payload
from tests.servers import ServerThread

MTOK = Decimal(1_000_000)
GPT_5 = {"input": Decimal("1.25"), "cache_read": Decimal("0.125"), "output": Decimal(10)}
GPT_41 = {"input": Decimal(2), "cache_read": Decimal("0.5"), "output": Decimal(8)}
CHAT_TOKENS = {
    "input": 86,
    "cache_write_5m": 0,
    "cache_write_1h": 0,
    "cache_read": 1920,
    "output": 300,
}
RESPONSES_TOKENS = {
    "input": 904,
    "cache_write_5m": 0,
    "cache_write_1h": 0,
    "cache_read": 4096,
    "output": 700,
}
MESSAGES: list[Any] = [{"role": "user", "content": "say hi"}]
Upstream = tuple[FakeOpenAI, ServerThread]


def by_hand(tokens: dict[str, int], rates: dict[str, Decimal]) -> Decimal:
    return sum((tokens[kind] * rates[kind] / MTOK for kind in rates), Decimal(0))


def usd(exact: Decimal) -> Decimal:
    """As the task API shows dollars: six places, half to even."""
    return exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)


def tagged(task: str, **more: str) -> dict[str, str]:
    return {"x-tokenmeter-task": task, "x-tokenmeter-user": "alice", **more}


def raw_chat(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """POST a chat completion with plain httpx and return the body exactly as received."""
    all_headers = {"authorization": "Bearer sk-test", "accept-encoding": "identity"}
    with httpx.stream(
        "POST", url, json=body, headers={**all_headers, **(headers or {})}, timeout=10
    ) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


def test_catalog_has_the_published_rates() -> None:
    at = datetime(2026, 11, 26, tzinfo=UTC)
    for model, rates in (("gpt-5", GPT_5), ("gpt-4.1", GPT_41)):
        card = Pricer().rate_card("openai", model, at)
        assert card is not None
        assert {kind: card.rates[kind].at(0) for kind in rates} == rates


def test_chat_completion_is_metered_without_double_counting_cache(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    answer = gpt.chat.completions.create(
        model="gpt-5", messages=MESSAGES, extra_headers=tagged("t-chat")
    )
    assert answer.choices[0].message.content == TEXT
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 2006
    task = openai_proxy.task("t-chat", 1)
    assert task["tokens"] == CHAT_TOKENS
    assert by_hand(CHAT_TOKENS, GPT_5) == Decimal("0.0033475")  # 86x1.25 + 1920x0.125 + 300x10
    assert Decimal(task["cost_usd"]) == usd(by_hand(CHAT_TOKENS, GPT_5))
    assert task["users"] == ["alice"]
    assert task["by_model"]["gpt-5"]["requests"] == 1
    assert task["cache_hit_rate"] == "0.9571"  # 1920 / 2006, a decimal string


def test_stream_without_include_usage_is_metered_and_byte_for_byte_unchanged(
    openai_proxy: Proxy, openai_upstream: Upstream
) -> None:
    fake, server = openai_upstream
    body = {"model": "gpt-5", "messages": MESSAGES, "stream": True}
    direct = raw_chat(f"{server.url}/v1/chat/completions", body)
    via_proxy = raw_chat(f"{openai_proxy.url}/openai/v1/chat/completions", body, tagged("t-inject"))
    assert b'"usage"' not in direct  # what OpenAI sends when usage was not asked for
    assert via_proxy == direct
    sent = json.loads(fake.requests[-1].body)
    assert sent["stream_options"] == {"include_usage": True}  # the proxy asked upstream for it
    task = openai_proxy.task("t-inject", 1)
    assert task["tokens"] == CHAT_TOKENS
    assert Decimal(task["cost_usd"]) == usd(by_hand(CHAT_TOKENS, GPT_5))


def test_stream_keeps_the_clients_other_stream_options(
    openai_proxy: Proxy, openai_upstream: Upstream
) -> None:
    fake, server = openai_upstream
    body = {
        "model": "gpt-5",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_obfuscation": False, "include_usage": False},
    }
    direct = raw_chat(f"{server.url}/v1/chat/completions", body)
    via_proxy = raw_chat(
        f"{openai_proxy.url}/openai/v1/chat/completions", body, tagged("t-options")
    )
    assert via_proxy == direct
    sent = json.loads(fake.requests[-1].body)
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert openai_proxy.task("t-options", 1)["tokens"] == CHAT_TOKENS


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_compressed_stream_decodes_to_the_same_bytes(
    openai_proxy: Proxy, openai_upstream: Upstream, coding: str
) -> None:
    _, server = openai_upstream
    body = {"model": "gpt-5", "messages": MESSAGES, "stream": True}
    headers = {"x-fake-compress": coding, "authorization": "Bearer k"}
    direct = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers)
    via_proxy = httpx.post(
        f"{openai_proxy.url}/openai/v1/chat/completions",
        json=body,
        headers={**headers, **tagged(f"t-{coding}")},
    )
    assert via_proxy.headers["content-encoding"] == coding
    assert via_proxy.content == direct.content  # httpx undid the coding of each
    assert openai_proxy.task(f"t-{coding}", 1)["tokens"] == CHAT_TOKENS


def test_stream_with_include_usage_asked_passes_through_untouched(
    openai_proxy: Proxy, openai_upstream: Upstream, gpt: openai.OpenAI
) -> None:
    fake, server = openai_upstream
    body = {
        "model": "gpt-5",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    direct = raw_chat(f"{server.url}/v1/chat/completions", body)
    via_proxy = raw_chat(f"{openai_proxy.url}/openai/v1/chat/completions", body, tagged("t-asked"))
    assert via_proxy == direct
    assert fake.requests[-1].body == fake.requests[-2].body  # the request was not touched either
    stream = gpt.chat.completions.create(
        model="gpt-5",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=tagged("t-asked"),
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 300
    task = openai_proxy.task("t-asked", 2)
    assert task["tokens"] == {kind: 2 * n for kind, n in CHAT_TOKENS.items()}


def test_sdk_stream_with_tool_calls(openai_proxy: Proxy, gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(
        model="gpt-4.1",
        messages=MESSAGES,
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
        stream=True,
        extra_headers=tagged("t-tools", **{"x-fake-scenario": "tool_calls"}),
    )
    chunks = list(stream)
    arguments = "".join(
        call.function.arguments or ""
        for chunk in chunks
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function is not None
    )
    assert arguments == TOOL_ARGUMENTS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(chunk.usage is None for chunk in chunks)  # the SDK saw no usage: none was asked
    task = openai_proxy.task("t-tools", 1)
    assert Decimal(task["cost_usd"]) == by_hand(CHAT_TOKENS, GPT_41) == Decimal("0.003532")


def test_responses_stream_is_metered(openai_proxy: Proxy, gpt: openai.OpenAI) -> None:
    with gpt.responses.stream(
        model="gpt-4.1", input="say hi", extra_headers=tagged("t-resp")
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == TEXT
    assert final.usage is not None
    assert final.usage.input_tokens == 5000
    task = openai_proxy.task("t-resp", 1)
    assert task["tokens"] == RESPONSES_TOKENS
    assert Decimal(task["cost_usd"]) == by_hand(RESPONSES_TOKENS, GPT_41) == Decimal("0.009456")


def test_responses_json_and_incomplete_stream(openai_proxy: Proxy, gpt: openai.OpenAI) -> None:
    answer = gpt.responses.create(model="gpt-5", input="hi", extra_headers=tagged("t-rjson"))
    assert answer.output_text == TEXT
    stream = gpt.responses.create(
        model="gpt-5",
        input="hi",
        stream=True,
        extra_headers=tagged("t-rjson", **{"x-fake-scenario": "incomplete"}),
    )
    events = [event.type for event in stream]
    assert events[-1] == "response.incomplete"
    task = openai_proxy.task("t-rjson", 2)
    assert task["tokens"] == {kind: 2 * n for kind, n in RESPONSES_TOKENS.items()}
    assert task["errors"] == 0  # cut by max_output_tokens is billed in full, not an error
    expected = 2 * by_hand(RESPONSES_TOKENS, GPT_5)  # 904 x 1.25 + 4096 x 0.125 + 700 x 10
    assert Decimal(task["cost_usd"]) == expected == Decimal("0.017284")


def test_responses_failed_event_is_an_error_with_its_usage(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    stream = gpt.responses.create(
        model="gpt-5",
        input="hi",
        stream=True,
        extra_headers=tagged("t-failed", **{"x-fake-scenario": "failed"}),
    )
    assert [event.type for event in stream][-1] == "response.failed"
    task = openai_proxy.task("t-failed", 1)
    assert task["errors"] == 1
    assert task["tokens"] == RESPONSES_TOKENS


def test_cache_writes_are_priced_once_at_the_write_rate(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    usage = {
        "input_tokens": 10_000,
        "input_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 6000},
        "output_tokens": 100,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10_100,
    }
    gpt.responses.create(
        model="gpt-5.6",
        input="hi",
        extra_headers=tagged("t-write", **{"x-fake-usage": json.dumps(usage)}),
    )
    task = openai_proxy.task("t-write", 1)
    assert task["tokens"] == {
        "input": 2000,
        "cache_write_5m": 6000,
        "cache_write_1h": 0,
        "cache_read": 2000,
        "output": 100,
    }
    card = Pricer().rate_card("openai", "gpt-5.6", datetime.now(UTC))
    assert card is not None
    write, read = card.rates["cache_write_5m"].at(0), card.rates["cache_read"].at(0)
    assert write == Decimal("1.25") * card.rates["input"].at(0)  # cache writes at 1.25x input
    assert read == Decimal("0.1") * card.rates["input"].at(0)
    rates = {kind: card.rates[kind].at(0) for kind in ("input", "cache_write_5m", "cache_read")}
    rates["output"] = card.rates["output"].at(0)
    tokens = {"input": 2000, "cache_write_5m": 6000, "cache_read": 2000, "output": 100}
    assert Decimal(task["cost_usd"]) == usd(by_hand(tokens, rates))


def test_embeddings_and_legacy_completions_are_metered(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    vectors = gpt.embeddings.create(
        model="text-embedding-3-small", input=["one", "two"], extra_headers=tagged("t-embed")
    )
    assert len(vectors.data) == 2
    assert len(vectors.data[0].embedding) == 8
    task = openai_proxy.task("t-embed", 1)
    assert task["tokens"]["input"] == 8
    assert task["tokens"]["output"] == 0
    text = gpt.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="say hi",
        stream=True,
        extra_headers=tagged("t-legacy"),
    )
    assert "".join(chunk.choices[0].text for chunk in text) == TEXT
    task = openai_proxy.task("t-legacy", 1)
    assert task["tokens"]["input"] == 5
    assert task["tokens"]["output"] == 7
    # gpt-3.5-turbo-instruct: $1.50 input, $2 output per MTok
    assert Decimal(task["cost_usd"]) == usd((5 * Decimal("1.5") + 7 * 2) / MTOK)


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_upstream_error_passes_through_verbatim_and_is_recorded(
    openai_proxy: Proxy, gpt: openai.OpenAI, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        gpt.chat.completions.create(
            model="gpt-5",
            messages=MESSAGES,
            stream=True,
            extra_headers=tagged(f"t-err-{status}", **{"x-fake-scenario": f"error_{status}"}),
        )
    assert caught.value.status_code == status
    assert caught.value.response.content == error_payload(status)
    assert caught.value.response.headers["x-should-retry"] == "false"
    task = openai_proxy.task(f"t-err-{status}", 1)
    assert task["errors"] == 1
    assert task["cost_usd"] == "0.000000"


def test_chat_stream_cut_midway_is_recorded_incomplete(openai_proxy: Proxy) -> None:
    body = {"model": "gpt-5", "messages": MESSAGES, "stream": True}
    headers = {"authorization": "Bearer k", **tagged("t-cut", **{"x-fake-scenario": "cut"})}
    received: bytes | None = None
    try:
        with httpx.stream(
            "POST", f"{openai_proxy.url}/openai/v1/chat/completions", json=body, headers=headers
        ) as r:
            received = r.read()
    except httpx.HTTPError:
        received = None  # the cut reached the client as a broken connection
    assert received is None or b"[DONE]" not in received  # never a fake clean end
    task = openai_proxy.task("t-cut", 1)
    assert task["total_tokens"] == 0  # a chat stream reports usage only in its last chunk
    assert task["by_model"]["gpt-5"]["requests"] == 1  # but what it was is known
    assert (
        openai_proxy.metric(
            "tokenmeter_requests_total",
            provider="openai",
            model="gpt-5",
            status="incomplete",
            code="200",
        )
        == 1
    )


def test_responses_stream_cut_midway_is_recorded_incomplete(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    stream = gpt.responses.create(
        model="gpt-5",
        input="hi",
        stream=True,
        extra_headers=tagged("t-rcut", **{"x-fake-scenario": "cut"}),
    )
    try:
        seen = [event.type for event in stream]
    except openai.APIError:
        seen = []  # the cut reached the client as a broken connection
    assert "response.output_text.delta" in seen or not seen
    assert "response.completed" not in seen  # never a fake clean end
    assert openai_proxy.task("t-rcut", 1)["total_tokens"] == 0
    assert (
        openai_proxy.metric(
            "tokenmeter_requests_total",
            provider="openai",
            model="gpt-5",
            status="incomplete",
            code="200",
        )
        == 1
    )


def test_models_list_passes_through_unmetered(openai_proxy: Proxy, gpt: openai.OpenAI) -> None:
    models = gpt.models.list(extra_headers=tagged("t-models"))
    assert [model.id for model in models] == ["gpt-5"]
    task = openai_proxy.task("t-models", 1)
    assert task["total_tokens"] == 0
    assert task["cost_usd"] == "0.000000"


def test_attribution_path_prefix_in_front_of_openai(
    openai_proxy: Proxy, openai_upstream: Upstream
) -> None:
    fake, _ = openai_upstream
    with openai.OpenAI(
        base_url=f"{openai_proxy.url}/u/carol/t/T-1/openai/v1", api_key="k", max_retries=0
    ) as client:
        client.chat.completions.create(model="gpt-5", messages=MESSAGES)
        assert fake.requests[-1].path == "/v1/chat/completions"
        assert fake.requests[-1].header("authorization") == "Bearer k"
        task = openai_proxy.task("T-1", 1)
        assert task["users"] == ["carol"]
        assert task["tokens"] == CHAT_TOKENS


def test_upstream_unreachable_is_a_502_in_openai_shape(
    make_proxy: Callable[..., Proxy], dead_url: str
) -> None:
    proxy = make_proxy(openai_upstream=dead_url)
    with openai.OpenAI(base_url=f"{proxy.url}/openai/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="gpt-5", messages=MESSAGES, extra_headers=tagged("t-dead")
            )
        assert caught.value.status_code == 502
        error = caught.value.response.json()["error"]
        assert error["type"] == "server_error"
        assert error["code"] == "upstream_unreachable"
        assert error["param"] is None
        assert dead_url in error["message"]
        assert proxy.task("t-dead", 1)["errors"] == 1


def test_request_reaches_upstream_byte_for_byte_when_not_streamed(
    openai_proxy: Proxy, openai_upstream: Upstream
) -> None:
    fake, _ = openai_upstream
    body = b'{"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    headers = {
        "authorization": "Bearer sk-proj-abc",
        "openai-organization": "org-1",
        "content-type": "application/json",
        "x-tokenmeter-user": "bob",
    }
    httpx.post(f"{openai_proxy.url}/openai/v1/chat/completions", content=body, headers=headers)
    got = fake.requests[-1]
    assert got.body == body
    assert got.header("openai-organization") == "org-1"
    assert got.header("x-tokenmeter-user") is None
