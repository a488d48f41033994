"""The proxy end to end: the real anthropic SDK -> tokenmeter -> a fake Anthropic on loopback.

Dollar figures are computed here by hand from the published per-MTok rates (Anthropic's prices):
claude-opus-4-8 is $5 input, $6.25 5-min write, $10 1-h write, $0.50 read, $25 output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal

import anthropic
import httpx
import pytest

from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic, error_payload
from tests.servers import ServerThread

OPUS_48 = {
    "input": 5,
    "cache_write_5m": Decimal("6.25"),
    "cache_write_1h": 10,
    "cache_read": Decimal("0.5"),
    "output": 25,
}
FAKE_TOKENS = {
    "input": 11,
    "cache_write_5m": 40,
    "cache_write_1h": 20,
    "cache_read": 300,
    "output": 7,
}
MTOK = Decimal(1_000_000)


def by_hand(
    tokens: dict[str, int], rates: dict[str, object], extra: Decimal = Decimal(0)
) -> Decimal:
    return sum((tokens[k] * Decimal(str(rates[k])) / MTOK for k in tokens), extra)


def ask(
    claude: anthropic.Anthropic,
    task: str,
    *,
    model: str = "claude-opus-4-8",
    headers: dict[str, str] | None = None,
) -> anthropic.types.Message:
    return claude.messages.create(
        model=model,
        max_tokens=1024,
        messages=[{"role": "user", "content": "say hi"}],
        extra_headers={"x-tokenmeter-task": task, "x-tokenmeter-user": "alice", **(headers or {})},
    )


def test_streamed_message_is_metered_exactly(proxy: Proxy, claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-opus-4-8",
        max_tokens=1024,
        messages=[{"role": "user", "content": "say hi"}],
        extra_headers={"x-tokenmeter-task": "t-stream", "x-tokenmeter-user": "alice"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hi! How can I help?"
    assert final.usage.cache_creation_input_tokens == 60

    task = proxy.task("t-stream", 1)
    assert task["tokens"] == FAKE_TOKENS
    expected = by_hand(FAKE_TOKENS, OPUS_48)
    assert Decimal(task["cost_usd"]) == expected  # $0.000830
    assert Decimal(task["blended_usd_per_mtok"]) == (expected * MTOK / 378).quantize(
        Decimal("0.000001")
    )
    assert task["users"] == ["alice"]
    assert task["by_model"]["claude-opus-4-8"]["requests"] == 1
    assert task["cache_hit_rate"] == "0.8086"  # 300 / 371, a decimal string
    added = proxy.metric("tokenmeter_proxy_added_seconds_sum", provider="anthropic")
    whole = proxy.metric("tokenmeter_exchange_seconds_sum", provider="anthropic")
    assert proxy.metric("tokenmeter_proxy_added_seconds_count", provider="anthropic") == 1
    assert 0 < added < whole  # the proxy's own share of the exchange, measured


def test_json_answer_compressed_is_forwarded_as_sent_and_metered_decoded(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    body = json.dumps(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    headers = {
        "x-api-key": "sk-ant-test-123",
        "anthropic-version": "2023-06-01",
        "accept-encoding": "gzip",
        "content-type": "application/json",
        "x-tokenmeter-task": "t-gzip",
    }
    raw = httpx.post(f"{proxy.url}/v1/messages", content=body, headers=headers)
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.json()["usage"]["input_tokens"] == 11  # httpx decodes what the proxy passed through
    task = proxy.task("t-gzip", 1)
    assert task["tokens"] == FAKE_TOKENS
    haiku = {
        "input": 1,
        "cache_write_5m": Decimal("1.25"),
        "cache_write_1h": 2,
        "cache_read": Decimal("0.1"),
        "output": 5,
    }
    assert Decimal(task["cost_usd"]) == by_hand(FAKE_TOKENS, haiku)


def test_request_reaches_upstream_byte_for_byte(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    body = (
        b'{"model":"claude-opus-4-8","max_tokens":9,'
        b'"messages":[{"role":"user","content":"hi"}],"stream":false}'
    )
    beta = (
        "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
        "effort-2025-11-24"
    )
    headers = {
        "x-api-key": "sk-ant-test-123",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": beta,
        "x-app": "cli",
        "x-tokenmeter-user": "bob",
        "x-tokenmeter-team": "platform",
        "content-type": "application/json",
    }
    httpx.post(f"{proxy.url}/v1/messages?beta=true", content=body, headers=headers)
    got = fake.requests[-1]
    assert got.body == body
    assert got.path == "/v1/messages"
    assert got.query == b"beta=true"
    assert got.header("anthropic-beta") == beta
    assert got.header("x-api-key") == "sk-ant-test-123"
    assert got.header("x-app") == "cli"
    assert got.header("x-tokenmeter-user") is None
    assert got.header("x-tokenmeter-team") is None
    assert got.header("user-agent") == f"python-httpx/{httpx.__version__}"  # the client's, not ours


def test_first_event_arrives_before_upstream_finishes(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    fake.pause_s = 1.0  # 10 events: the upstream needs 9 s to finish
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "x-fake-scenario": "slow"}
    with httpx.stream(
        "POST", f"{proxy.url}/v1/messages", json=body, headers=headers, timeout=30
    ) as r:
        first = next(r.iter_bytes())
        first_at = time.monotonic()
    assert first.startswith(b"event: message_start")
    assert len(fake.sent_at) == 1 or first_at < fake.sent_at[1]  # before upstream's 2nd event


def test_pings_and_every_event_pass_through(proxy: Proxy) -> None:
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "x-fake-scenario": "tool_use"}
    r = httpx.post(f"{proxy.url}/v1/messages", json=body, headers=headers)
    events = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert events[:2] == ["message_start", "ping"]
    assert events[-2:] == ["message_delta", "message_stop"]
    assert "input_json_delta" in r.text


@pytest.mark.parametrize("status", [400, 429, 500, 529])
def test_upstream_error_passes_through_verbatim_and_is_recorded(
    proxy: Proxy, claude: anthropic.Anthropic, status: int
) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        ask(claude, f"t-err-{status}", headers={"x-fake-scenario": f"error_{status}"})
    assert caught.value.status_code == status
    assert caught.value.response.content == error_payload(status)
    assert caught.value.response.headers["x-should-retry"] == "false"
    task = proxy.task(f"t-err-{status}", 1)
    assert task["errors"] == 1
    assert task["cost_usd"] == "0.000000"
    # The error names no model; the request did (recorded as "unknown" before: issue 15, 7).
    assert list(task["by_model"]) == ["claude-opus-4-8"]
    assert (
        proxy.metric(
            "tokenmeter_requests_total",
            provider="anthropic",
            model="claude-opus-4-8",
            status="upstream_error",
            code=str(status),
        )
        == 1
    )


def test_mid_stream_error_event_passes_through_and_keeps_partial_usage(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        claude.messages.stream(
            model="claude-opus-4-8",
            max_tokens=9,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": "mid_stream_error", "x-tokenmeter-task": "t-mid"},
        ) as stream,
    ):
        for _ in stream:
            pass
    task = proxy.task("t-mid", 1)
    assert task["errors"] == 1
    assert task["tokens"]["input"] == 11
    assert task["tokens"]["output"] == 1  # message_start's placeholder: all that was streamed


def test_upstream_unreachable_is_a_502_in_anthropic_shape(
    make_proxy: Callable[..., Proxy], dead_url: str
) -> None:
    proxy = make_proxy(anthropic_upstream=dead_url)
    with anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0) as claude:
        with pytest.raises(anthropic.APIStatusError) as caught:
            ask(claude, "t-dead")
        assert caught.value.status_code == 502
        error = caught.value.response.json()
        assert error["type"] == "error"
        assert error["error"]["type"] == "api_error"
        assert dead_url in error["error"]["message"]
        assert proxy.task("t-dead", 1)["errors"] == 1


def test_an_error_answer_to_a_request_nested_past_the_parsers_depth_is_recorded(
    proxy: Proxy,
) -> None:
    # Naming the model of an error answer parsed the request: RecursionError, and no event.
    nested = b"[" * 100_000 + b"]" * 100_000
    body = b'{"model": "claude-opus-4-8", "messages": ' + nested + b"}"
    headers = {"x-fake-scenario": "error_400", "x-tokenmeter-task": "t-deep"}
    response = proxy.http.post("/v1/messages", content=body, headers=headers)
    assert response.status_code == 400
    assert proxy.task("t-deep", 1)["errors"] == 1


def test_upstream_timeout_is_a_504(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(read_timeout_s=0.5)
    with anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0) as claude:
        with pytest.raises(anthropic.APIStatusError) as caught:
            ask(claude, "t-slow", headers={"x-fake-scenario": "stall"})
        assert caught.value.status_code == 504
        assert caught.value.response.json()["error"]["type"] == "timeout_error"


def test_client_hang_up_records_partial_usage(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    fake.pause_s = 0.3
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {
        "x-api-key": "k",
        "anthropic-version": "2023-06-01",
        "x-fake-scenario": "slow",
        "x-tokenmeter-task": "t-hangup",
    }
    with httpx.stream("POST", f"{proxy.url}/v1/messages", json=body, headers=headers) as r:
        assert next(r.iter_bytes()).startswith(b"event: message_start")
    task = proxy.task("t-hangup", 1)
    assert task["tokens"]["input"] == 11
    assert task["tokens"]["cache_read"] == 300
    rows = proxy.http.get("/api/v1/usage", params={"group_by": "task"}).json()["rows"]
    assert [row["task"] for row in rows] == ["t-hangup"]
    assert (
        proxy.metric(
            "tokenmeter_requests_total",
            provider="anthropic",
            model="claude-opus-4-8",
            status="client_disconnected",
            code="200",
        )
        == 1
    )


def test_upstream_cut_mid_stream_is_recorded_incomplete(proxy: Proxy) -> None:
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {
        "x-api-key": "k",
        "anthropic-version": "2023-06-01",
        "x-fake-scenario": "cut",
        "x-tokenmeter-task": "t-cut",
    }
    received: bytes | None = None
    try:
        with httpx.stream("POST", f"{proxy.url}/v1/messages", json=body, headers=headers) as r:
            received = r.read()
    except httpx.HTTPError:
        received = None  # the cut reached the client as a broken connection
    assert received is None or b"message_stop" not in received  # never a fake clean end
    task = proxy.task("t-cut", 1)
    assert task["tokens"]["input"] == 11
    assert (
        proxy.metric(
            "tokenmeter_requests_total",
            provider="anthropic",
            model="claude-opus-4-8",
            status="incomplete",
            code="200",
        )
        == 1
    )


def test_malformed_request_json_is_forwarded_and_upstream_judges(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    r = httpx.post(
        f"{proxy.url}/v1/messages", content=b'{"model": "claude-', headers={"x-api-key": "k"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert fake.requests[-1].body == b'{"model": "claude-'
    assert httpx.get(f"{proxy.url}/healthz").json()["status"] == "ok"


def test_path_prefix_names_user_and_task_and_is_removed(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    with anthropic.Anthropic(
        base_url=f"{proxy.url}/u/carol/t/demo-42", api_key="k", max_retries=0
    ) as claude:
        claude.messages.create(
            model="claude-opus-4-8", max_tokens=9, messages=[{"role": "user", "content": "hi"}]
        )
        assert fake.requests[-1].path == "/v1/messages"
        task = proxy.task("demo-42", 1)
        assert task["users"] == ["carol"]


def test_claude_code_session_is_the_task_when_none_is_named(proxy: Proxy) -> None:
    with anthropic.Anthropic(base_url=proxy.url, api_key="k", max_retries=0) as claude:
        session = "11111111-1111-4111-8111-111111111111"
        claude.messages.create(
            model="claude-opus-4-8",
            max_tokens=9,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Claude-Code-Session-Id": session},
        )
        task = proxy.task(session, 1)
        assert task["sessions"] == [session]


def test_web_search_counts_replace_not_add(proxy: Proxy, claude: anthropic.Anthropic) -> None:
    usage = {
        "input_tokens": 2679,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 510,
        "server_tool_use": {"web_search_requests": 1},
    }
    with claude.messages.stream(
        model="claude-opus-4-8",
        max_tokens=9,
        messages=[{"role": "user", "content": "search"}],
        extra_headers={
            "x-fake-scenario": "web_search",
            "x-fake-usage": json.dumps(usage),
            "x-tokenmeter-task": "t-web",
        },
    ) as stream:
        stream.until_done()
    task = proxy.task("t-web", 1)
    assert task["tokens"]["output"] == 510  # two cumulative message_deltas, not 255 + 510
    assert task["web_search_requests"] == 1
    tokens = {
        "input": 2679,
        "cache_write_5m": 0,
        "cache_write_1h": 0,
        "cache_read": 0,
        "output": 510,
    }
    assert Decimal(task["cost_usd"]) == by_hand(tokens, OPUS_48, extra=Decimal("0.01"))


def test_count_tokens_and_models_are_recorded_with_zero_tokens(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    counted = claude.messages.count_tokens(
        model="claude-opus-4-8",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-tokenmeter-task": "t-count"},
    )
    assert counted.input_tokens == 2095
    task = proxy.task("t-count", 1)
    assert task["total_tokens"] == 0
    assert task["cost_usd"] == "0.000000"


def test_unknown_model_is_unpriced_never_zero(proxy: Proxy, claude: anthropic.Anthropic) -> None:
    ask(claude, "t-unknown", model="claude-imaginary-9")
    task = proxy.task("t-unknown", 1)
    assert task["unpriced_requests"] == 1
    assert task["tokens"] == FAKE_TOKENS
    assert (
        proxy.metric(
            "tokenmeter_unpriced_requests_total", provider="anthropic", model="claude-imaginary-9"
        )
        == 1
    )


def test_non_provider_path_gets_a_clear_404(proxy: Proxy) -> None:
    r = httpx.head(f"{proxy.url}/nope/")  # "/" is the web dashboard now
    assert r.status_code == 404
    r = httpx.get(f"{proxy.url}/nope")
    assert "under /v1/" in r.json()["error"]["message"]
