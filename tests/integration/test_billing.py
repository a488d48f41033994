"""Every dollar the response says, through the real proxy: the real anthropic and openai SDKs
against the fakes, each answer once as JSON and once streamed.

Expected dollars are priced here by hand from the published $/MTok rates of
Anthropic's pricing page (platform.claude.com/docs/en/about-claude/pricing), with the
billing rules of its compaction, advisor-tool and refusals-and-fallback pages (compaction and
advisor iterations on top of the top-level usage, each at its own model; declined attempts and
refusals before output free; a mid-stream refusal billed for what streamed).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import Settings
from proxy.serving import SERVER_OPTIONS
from proxy.store.tables import usage_events
from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread

TOKEN_CAP = 10**12  # issue 12: more than this of one kind in one answer is absurd

# $/MTok: input, 5-min cache write, 1-h cache write, cache read, output (Anthropic's pricing page).
RATES: dict[str, tuple[str, str, str, str, str]] = {
    "claude-opus-4-8": ("5", "6.25", "10", "0.5", "25"),
    "claude-sonnet-4-6": ("3", "3.75", "6", "0.3", "15"),
    "claude-fable-5": ("10", "12.5", "20", "1", "50"),
}
KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")


def dollars(model: str, **tokens: int) -> Decimal:
    """``tokens`` (by kind) at ``model``'s list rates."""
    rates = dict(zip(KINDS, map(Decimal, RATES[model]), strict=True))
    return sum((n * rates[kind] / 1_000_000 for kind, n in tokens.items()), Decimal(0))


def entry(kind: str, model: str | None = None, **counts: int) -> dict[str, Any]:
    """One ``usage.iterations`` entry as Anthropic sends it."""
    names = {"input": "input_tokens", "read": "cache_read_input_tokens", "output": "output_tokens"}
    item: dict[str, Any] = {"type": kind, "cache_creation_input_tokens": 0}
    item |= {"input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}
    item |= {names[k]: v for k, v in counts.items() if k in names}
    if "write_5m" in counts:
        item["cache_creation_input_tokens"] = counts["write_5m"]
        item["cache_creation"] = {
            "ephemeral_5m_input_tokens": counts["write_5m"],
            "ephemeral_1h_input_tokens": 0,
        }
    return item | ({"model": model} if model else {})


def top(input: int, output: int, read: int = 0, write_5m: int = 0, **extra: Any) -> dict[str, Any]:
    """A top-level usage object."""
    usage = {
        "input_tokens": input,
        "cache_creation_input_tokens": write_5m,
        "cache_read_input_tokens": read,
        "output_tokens": output,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    }
    return usage | extra


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # the model asked for
    usage: dict[str, Any]
    cost: Decimal | None  # by hand; None = unknown
    tokens: dict[str, int]
    scenario: str = "text"
    served_by: str | None = None  # the event's model when it is not the one asked for
    stop_reason: str = "end_turn"
    problem: str | None = None
    streams_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


COMPACTION = entry("compaction", input=180_000, output=3_500)
EXECUTOR = entry("message", input=3_000, write_5m=2_000, read=20_000, output=1_000)
ADVISED = [
    entry("message", input=412, output=89),
    entry("advisor_message", "claude-opus-4-8", input=823, output=1_612),
    entry("message", input=1_348, read=412, output=442),
]
MID_OUTPUT_FALLBACK = [
    entry("message", "claude-fable-5", input=535, output=120),
    entry("fallback_message", "claude-opus-4-8", input=655, output=264),
]
PRE_OUTPUT_FALLBACK = [
    entry("message", "claude-fable-5", input=535),
    entry("fallback_message", "claude-opus-4-8", input=412, output=264),
]
FALLBACKS = {"fallbacks": [{"model": "claude-opus-4-8"}]}

CASES = [
    Case(
        "compaction iterations: the summarising step is billed too",
        "claude-opus-4-8",
        top(3_000, 1_000, read=20_000, write_5m=2_000, iterations=[COMPACTION, EXECUTOR]),
        dollars("claude-opus-4-8", input=183_000, cache_write_5m=2_000)
        + dollars("claude-opus-4-8", cache_read=20_000, output=4_500),  # $1.05, was $0.0625
        {"input": 183_000, "cache_write_5m": 2_000, "cache_read": 20_000, "output": 4_500},
    ),
    Case(
        "advisor iteration at the advisor model's rates",
        "claude-sonnet-4-6",
        top(1_760, 531, read=412, iterations=ADVISED),
        dollars("claude-sonnet-4-6", input=1_760, cache_read=412, output=531)
        + dollars("claude-opus-4-8", input=823, output=1_612),
        {"input": 2_583, "cache_read": 412, "output": 2_143},
    ),
    Case(
        "fallback after partial output: both attempts, each at its own model",
        "claude-fable-5",
        top(655, 264, iterations=MID_OUTPUT_FALLBACK),
        dollars("claude-fable-5", input=535, output=120)
        + dollars("claude-opus-4-8", input=655, output=264),
        {"input": 1_190, "output": 384},
        scenario="fallback",
        served_by="claude-opus-4-8",
        extra=FALLBACKS,
    ),
    Case(
        "fallback before output: the declined attempt is free, its tokens kept",
        "claude-fable-5",
        top(412, 264, iterations=PRE_OUTPUT_FALLBACK),
        dollars("claude-opus-4-8", input=412, output=264),
        {"input": 947, "output": 264},
        scenario="fallback",
        served_by="claude-opus-4-8",
        extra=FALLBACKS,
    ),
    Case(
        "refusal before any output: $0, tokens kept, reason stored",
        "claude-fable-5",
        top(412, 0),
        Decimal(0),
        {"input": 412},
        scenario="refusal",
        stop_reason="refusal",
    ),
    Case(
        "refusal mid-stream: input and the output already streamed",
        "claude-fable-5",
        top(412, 57),
        dollars("claude-fable-5", input=412, output=57),
        {"input": 412, "output": 57},
        scenario="refusal_mid_stream",
        stop_reason="refusal",
    ),
    Case(
        "a stream without its final blank line keeps the last message_delta's output",
        "claude-opus-4-8",
        top(11, 7, read=300, write_5m=60),
        dollars("claude-opus-4-8", input=11, cache_write_5m=60, cache_read=300, output=7),
        {"input": 11, "cache_write_5m": 60, "cache_read": 300, "output": 7},
        scenario="no_final_blank",
        streams_only=True,
    ),
    Case(
        "absurd output: capped at 10^12, flagged, dollars unknown",
        "claude-opus-4-8",
        top(11, 666_666_666_666_666),
        None,
        {"input": 11, "output": TOKEN_CAP},
        problem="usage_over_cap",
    ),
    Case(
        "10^30 output tokens: no crash",
        "claude-opus-4-8",
        top(11, 10**30),
        None,
        {"input": 11, "output": TOKEN_CAP},
        problem="usage_over_cap",
    ),
    Case(
        "negative and fractional counts: made safe, flagged, dollars unknown",
        "claude-opus-4-8",
        top(-5, 7, cache_read_input_tokens=7.5),
        None,
        {"cache_read": 7, "output": 7},
        problem="usage_negative,usage_not_integer",
    ),
]


@pytest.fixture
def claude_for() -> Iterator[Callable[[Proxy], anthropic.Anthropic]]:
    """The real anthropic SDK for a proxy a test made itself (no retries: one exchange each)."""
    clients: list[anthropic.Anthropic] = []

    def make(proxy: Proxy) -> anthropic.Anthropic:
        clients.append(anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-t", max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def event_row(proxy: Proxy, task: str) -> dict[str, Any]:
    """The one ``usage_events`` row of ``task``, once the recorder wrote it."""
    proxy.task(task, 1)
    url = str(proxy.app.parts.settings.database_url).replace("+aiosqlite", "")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(usage_events).where(usage_events.c.task == task)
            return dict(conn.execute(query).mappings().one())
    finally:
        engine.dispose()


def _ask(claude: anthropic.Anthropic, case: Case, task: str, stream: bool) -> None:
    headers = {
        "x-fake-scenario": case.scenario,
        "x-fake-usage": json.dumps(case.usage),
        "x-tokenmeter-task": task,
    }
    request: dict[str, Any] = {
        "model": case.model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hello"}],
        "betas": ["compact-2026-01-12", "server-side-fallback-2026-06-01"],
        "extra_headers": headers,
        "extra_body": case.extra,
    }
    if not stream:
        message = claude.beta.messages.create(**request)
        assert message.stop_reason == case.stop_reason  # the SDK read the shapes the fake sent
        assert len(message.usage.iterations or []) == len(case.usage.get("iterations", []))
        return
    with claude.beta.messages.create(**request, stream=True) as events:
        names = [event.type for event in events]
    assert names[0] == "message_start"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, anthropic.Anthropic]]:
    """One proxy (and SDK client) for every case: each case has its own task, and starting a
    proxy per case would double this file's time."""
    tmp = tmp_path_factory.mktemp("billing")
    with ServerThread(FakeAnthropic()) as upstream:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp}/tokenmeter.db",
            anthropic_upstream=upstream.url,
            spool_dir=tmp / "spool",
            recorder_flush_interval_s=0.05,
        )
        app = create_app(settings, registry=CollectorRegistry())
        with ServerThread(app, **SERVER_OPTIONS) as server:
            proxy = Proxy(server, app)
            with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-t", max_retries=0) as c:
                yield proxy, c
            proxy.http.close()


PAIRS = [
    pytest.param(case, stream, id=f"{case.name}-{'sse' if stream else 'json'}")
    for case in CASES
    for stream in (False, True)
    if stream or not case.streams_only  # a JSON body has no blank lines to lose
]


@pytest.mark.parametrize(("case", "stream"), PAIRS)
def test_every_dollar_the_response_says(
    shared: tuple[Proxy, anthropic.Anthropic], case: Case, stream: bool
) -> None:
    proxy, claude = shared
    task = f"t-{CASES.index(case)}-{stream}"
    _ask(claude, case, task, stream)
    row = event_row(proxy, task)
    expected_cost = None if case.cost is None else case.cost.quantize(Decimal("1e-10"))
    assert row["cost_usd"] == expected_cost
    tokens = {kind: row[f"{kind}_tokens"] for kind in KINDS}
    assert tokens == dict.fromkeys(KINDS, 0) | case.tokens
    assert row["model"] == (case.served_by or case.model)
    assert row["stop_reason"] == case.stop_reason
    assert row["usage_problem"] == case.problem
    stored = json.loads(row["iterations"]) if row["iterations"] else []
    assert [item["type"] for item in stored] == [
        i["type"] for i in case.usage.get("iterations", [])
    ]
    task_view = proxy.http.get(f"/api/v1/tasks/{task}").json()
    assert task_view["cost_usd"] == (
        None if case.cost is None else str(case.cost.quantize(Decimal("0.000001")))
    )


def test_problems_are_counted_by_provider_and_kind(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    for index, case in enumerate(CASES[-3:]):
        _ask(claude, case, f"t-problem-{index}", stream=False)
        event_row(proxy, f"t-problem-{index}")
    count = proxy.metric
    assert (
        count("tokenmeter_usage_problems_total", provider="anthropic", problem="usage_over_cap")
        == 2
    )
    assert (
        count("tokenmeter_usage_problems_total", provider="anthropic", problem="usage_negative")
        == 1
    )
    assert (
        count("tokenmeter_unpriced_requests_total", provider="anthropic", model="claude-opus-4-8")
        == 3
    )


@pytest.mark.parametrize("scenario", ["cut_before_usage", "no_usage_chunk"])
def test_an_openai_stream_whose_usage_never_came_is_unpriced_not_free(
    openai_proxy: Proxy, gpt: openai.OpenAI, scenario: str
) -> None:
    task = f"t-openai-{scenario}"
    headers = {"x-fake-scenario": scenario, "x-tokenmeter-task": task}
    cut = scenario.startswith("cut")
    with pytest.raises(openai.APIConnectionError) if cut else contextlib.nullcontext():
        stream = gpt.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers=headers,
        )
        assert all(chunk.usage is None for chunk in stream)  # the client never asked for it
    row = event_row(openai_proxy, task)
    assert row["model"] == "gpt-5"
    assert row["cost_usd"] is None  # unknown, not $0
    assert row["usage_problem"] == "usage_missing"
    view = openai_proxy.http.get(f"/api/v1/tasks/{task}").json()
    assert (view["cost_usd"], view["unpriced_requests"]) == (None, 1)
    missing = openai_proxy.metric(
        "tokenmeter_usage_problems_total", provider="openai", problem="usage_missing"
    )
    assert missing == 1


def test_an_openai_json_answer_without_usage_is_unpriced(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    headers = {"x-fake-scenario": "no_usage_chunk", "x-tokenmeter-task": "t-openai-json"}
    answer = gpt.chat.completions.create(
        model="gpt-5", messages=[{"role": "user", "content": "hi"}], extra_headers=headers
    )
    assert answer.usage is None
    row = event_row(openai_proxy, "t-openai-json")
    assert (row["cost_usd"], row["usage_problem"]) == (None, "usage_missing")


@pytest.mark.postgres
def test_absurd_usage_never_poisons_a_postgresql_rollup(
    make_proxy: Callable[..., Proxy],
    pg_url: str,
    claude_for: Callable[[Proxy], anthropic.Anthropic],
) -> None:
    """An answer priced at the NUMERIC(20, 10) limit used to fill the user's rollup row, and every
    later event of that user and hour was refused; 10^30 crashed pricing. Now each is capped,
    flagged and unpriced, and the events after them land in the same rollup row."""
    proxy = make_proxy(database_url=pg_url)
    claude = claude_for(proxy)
    outputs = [399_999_999_999_999, 666_666_666_666_666, 10**30, 7, 7, 7]
    for index, output in enumerate(outputs):
        case = Case("poison", "claude-opus-4-8", top(11, output), None, {})
        _ask(claude, case, "t-poison", stream=index % 2 == 1)
    view = proxy.task("t-poison", len(outputs), timeout=5)
    assert view["requests"] == len(outputs)
    assert view["unpriced_requests"] == 3
    assert view["tokens"]["output"] == 3 * TOKEN_CAP + 21
    assert view["cost_usd"] == str(
        dollars("claude-opus-4-8", input=33, output=21).quantize(Decimal("1e-6"))
    )
    usage = proxy.http.get("/api/v1/usage", params={"group_by": "user"}).json()
    assert usage["total"]["requests"] == len(outputs)  # the rollup row took every event
