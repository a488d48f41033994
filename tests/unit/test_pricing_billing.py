"""What of an answer is charged (pricing/billing.py), and a pricer that never raises.

Each case is priced by hand from the $/MTok rates of Anthropic's pricing page: claude-opus-4-8
$5 in, $0.50 read, $25 out; claude-sonnet-4-6 $3 / $0.30 / $15; claude-fable-5 $10 / $1 / $50.
"""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from proxy.meter import Meter
from proxy.pricing import Pricer
from proxy.pricing.billing import charged_parts
from proxy.usage import (
    Iteration,
    ResponseFacts,
    Usage,
    UsageEvent,
)
from tests.factories import make_event

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)
OPUS, SONNET, FABLE = "claude-opus-4-8", "claude-sonnet-4-6", "claude-fable-5"


def mtok(dollars_per_mtok: str, tokens: int) -> D:
    return D(dollars_per_mtok) * tokens / 1_000_000


def event(facts: ResponseFacts, http_status: int = 200) -> UsageEvent:
    return make_event(facts=facts, http_status=http_status, started_at=AT, priced=False)


def it(kind: str, model: str, input: int = 0, output: int = 0, read: int = 0) -> Iteration:
    return Iteration(kind, model, Usage(input=input, output=output, cache_read=read))


def facts(
    model: str, usage: Usage, *iterations: Iteration, stop: str = "end_turn"
) -> ResponseFacts:
    return ResponseFacts(usage, model, stop_reason=stop, iterations=iterations, saw_usage=True)


CASES = [
    pytest.param(
        facts(
            OPUS,
            Usage(input=203_000, output=4_500),
            it("compaction", OPUS, 180_000, 3_500),
            it("message", OPUS, 23_000, 1_000),
        ),
        mtok("5", 203_000) + mtok("25", 4_500),
        id="compaction: every step, the top level not added on top",
    ),
    pytest.param(
        facts(
            SONNET,
            Usage(input=2_583, cache_read=412, output=2_143),
            it("message", SONNET, 412, 89),
            it("advisor_message", OPUS, 823, 1_612),
            it("message", SONNET, 1_348, 442, read=412),
        ),
        mtok("3", 1_760) + mtok("0.3", 412) + mtok("15", 531) + mtok("5", 823) + mtok("25", 1_612),
        id="advisor at the advisor model's rates",
    ),
    pytest.param(
        facts(
            OPUS,
            Usage(input=947, output=264),
            it("message", FABLE, 535, 0),
            it("fallback_message", OPUS, 412, 264),
        ),
        mtok("5", 412) + mtok("25", 264),
        id="a hop declined before output is free",
    ),
    pytest.param(
        facts(
            OPUS,
            Usage(input=1_190, output=384),
            it("message", FABLE, 535, 120),
            it("fallback_message", OPUS, 655, 264),
        ),
        mtok("10", 535) + mtok("50", 120) + mtok("5", 655) + mtok("25", 264),
        id="a hop declined after output is billed at its model",
    ),
    pytest.param(
        facts(
            FABLE,
            Usage(input=947),
            it("message", FABLE, 535, 0),
            it("fallback_message", OPUS, 412, 0),
            stop="refusal",
        ),
        D(0),
        id="every hop declined before output: nothing",
    ),
    pytest.param(facts(FABLE, Usage(input=412), stop="refusal"), D(0), id="refusal before output"),
    pytest.param(
        facts(FABLE, Usage(input=412, output=57), stop="refusal"),
        mtok("10", 412) + mtok("50", 57),
        id="refusal mid-stream: what streamed",
    ),
    pytest.param(
        facts(OPUS, Usage(input=11, output=7, web_search_requests=2), it("message", OPUS, 11, 7)),
        mtok("5", 11) + mtok("25", 7) + D("0.02"),
        id="web searches once, at the top",
    ),
]


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer()


@pytest.mark.parametrize(("answer", "expected"), CASES)
def test_charged_as_the_pages_say(pricer: Pricer, answer: ResponseFacts, expected: D) -> None:
    cost = pricer.price(event(answer))
    assert cost is not None
    assert cost.total == expected
    assert cost.total == sum(cost.by_kind.values())  # the stored breakdown adds up
    assert cost.catalog_model == answer.model


def test_an_unknown_model_in_any_step_makes_the_whole_cost_unknown(pricer: Pricer) -> None:
    answer = facts(
        SONNET,
        Usage(input=1_235, output=1_701),
        it("message", SONNET, 412, 89),
        it("advisor_message", "claude-mystery-9", 823, 1_612),
    )
    assert pricer.price(event(answer)) is None  # not the executor's part alone


@pytest.mark.parametrize(
    "usage",
    [
        Usage(output=10**30),
        Usage(input=-1),
        Usage(output=10**12 + 1),
        Usage(web_search_requests=10**7),
    ],
    ids=["10^30", "negative", "over the cap", "searches over the cap"],
)
def test_a_hand_built_absurd_count_is_unknown_not_a_crash(pricer: Pricer, usage: Usage) -> None:
    assert pricer.price(event(facts(OPUS, usage))) is None


def test_distrusted_usage_is_unknown(pricer: Pricer) -> None:
    answer = facts(OPUS, Usage(input=11, output=10**12))
    answer.problems = ("usage_over_cap",)
    assert pricer.price(event(answer)) is None


def test_parts_are_in_order_with_the_response_model_for_unnamed_steps() -> None:
    answer = facts(OPUS, Usage(input=1, output=1), Iteration("compaction", None, Usage(input=5)))
    assert charged_parts(answer) == [(OPUS, Usage(input=5))]


class _Recorded:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def observe(self, event: UsageEvent) -> None:
        self.events.append(event)

    def submit(self, event: UsageEvent) -> None:
        self.events.append(event)


@pytest.mark.parametrize(
    ("answer", "http_status", "cost"),
    [
        (ResponseFacts(model="gpt-5", metered=True), 200, None),  # a stream cut before usage
        (ResponseFacts(model="gpt-5", metered=True, error_type="server_error"), 200, D(0)),
        (ResponseFacts(model="gpt-5", metered=True), 500, D(0)),  # errors are not billed
        (ResponseFacts(), 200, D(0)),  # count_tokens, models: not metered
        (ResponseFacts(model="gpt-5", metered=True, saw_usage=True), 200, D(0)),  # zero usage
    ],
    ids=["usage missing", "error event", "http error", "not metered", "said zero"],
)
def test_the_meter_never_calls_missing_usage_free(
    pricer: Pricer, answer: ResponseFacts, http_status: int, cost: D | None
) -> None:
    recorded = _Recorded()
    handed = event(answer, http_status)
    done = Meter(pricer, recorded, recorded)(handed)
    assert (None if done.cost is None else done.cost.total) == cost
    assert ("usage_missing" in done.facts.problems) == (cost is None)
    assert recorded.events == [done, done]  # observed and submitted: the priced event
    assert (handed.cost, handed.facts.problems) == (None, ())  # the meter changed nothing of it
