"""The Anthropic tap reads the tokens a user is billed for, from real-shaped answers."""

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import brotli
import pytest
import zstandard

from proxy.failures import Failure
from proxy.providers.anthropic import (
    ANTHROPIC,
    MAX_JSON_BODY_BYTES,
    AnthropicTap,
    error_body,
    is_metered,
    is_metered_path,
    provider,
)
from proxy.usage import Usage
from tests.fakes.anthropic_format import Json
from tests.fakes.anthropic_upstream import error_payload

TRAFFIC = Path(__file__).resolve().parents[1] / "fixtures" / "claude-code-traffic.jsonl"
SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"

# One server-sent event: its name and its JSON data.
Event = tuple[str, Json]


def sse(*events: Event) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )


def start(usage: Json, model: str = "claude-opus-4-8") -> Event:
    message: Json = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return "message_start", {"type": "message_start", "message": message}


def delta(usage: Json, stop_reason: str | None = None) -> Event:
    body = {"stop_reason": stop_reason, "stop_sequence": None}
    return "message_delta", {"type": "message_delta", "delta": body, "usage": usage}


def block_start(index: int, block: Json) -> Event:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def block_delta(index: int, kind: str, **fields: object) -> Event:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": kind, **fields},
    }


def block_stop(index: int) -> Event:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


PING = ("ping", {"type": "ping"})
STOP = ("message_stop", {"type": "message_stop"})
CLAUDE_CODE_USAGE = {
    "input_tokens": 11,
    "cache_creation_input_tokens": 60,
    "cache_read_input_tokens": 300,
    "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 20},
    "output_tokens": 7,
    "service_tier": "standard",
}
CLAUDE_CODE_TOKENS = Usage(input=11, cache_write_5m=40, cache_write_1h=20, cache_read=300, output=7)

TEXT_STREAM = sse(
    start({**CLAUDE_CODE_USAGE, "output_tokens": 1, "inference_geo": "global"}),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    block_delta(0, "text_delta", text="Hi! How can "),
    block_delta(0, "text_delta", text="I help — héllo 🎉?"),
    block_stop(0),
    delta(
        {
            "input_tokens": 11,
            "cache_creation_input_tokens": 60,
            "cache_read_input_tokens": 300,
            "output_tokens": 7,
        },
        "end_turn",
    ),
    STOP,
)


def tap_of(
    body: bytes, content_type: str = SSE, encoding: str | None = None, size: int = 0
) -> AnthropicTap:
    tap = AnthropicTap(content_type, encoding)
    size = size or len(body) or 1
    for i in range(0, len(body), size):
        tap.feed(body[i : i + size])
    return tap


def test_claude_code_text_stream_maps_every_token_kind() -> None:
    facts = tap_of(TEXT_STREAM).result()
    assert facts.usage == CLAUDE_CODE_TOKENS
    assert (facts.model, facts.message_id) == ("claude-opus-4-8", "msg_01XFDUDYJgAACzvnptvVoYEL")
    assert (facts.stop_reason, facts.service_tier, facts.inference_geo) == (
        "end_turn",
        "standard",
        "global",
    )
    assert facts.complete
    assert facts.saw_usage
    assert facts.error_type is None


def test_a_stream_split_at_every_byte_boundary_reads_the_same() -> None:
    whole = tap_of(TEXT_STREAM).result()
    for cut in range(len(TEXT_STREAM) + 1):
        tap = AnthropicTap(SSE, None)
        tap.feed(TEXT_STREAM[:cut])
        tap.feed(TEXT_STREAM[cut:])
        assert tap.result() == whole, cut


def test_a_stream_fed_one_byte_at_a_time_with_crlf_reads_the_same() -> None:
    crlf = TEXT_STREAM.replace(b"\n", b"\r\n")
    assert tap_of(crlf, size=1).result() == tap_of(TEXT_STREAM).result()


def test_every_recorded_claude_code_answer_maps_exactly() -> None:
    answers = [json.loads(line)["response"] for line in TRAFFIC.read_text().splitlines()]
    usages = [answer["usage"] for answer in answers if "usage" in answer]
    assert len(usages) == 7
    for usage in usages:
        stream = sse(start({**usage, "output_tokens": 1}), delta(usage, "end_turn"), STOP)
        assert tap_of(stream).result().usage == CLAUDE_CODE_TOKENS
        body = json.dumps({"type": "message", "usage": usage}).encode()
        assert tap_of(body, JSON).result().usage == CLAUDE_CODE_TOKENS


def test_tool_use_stream_with_partial_json_input() -> None:
    stream = sse(
        start({"input_tokens": 472, "output_tokens": 2}),
        block_start(0, {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {}}),
        block_delta(0, "input_json_delta", partial_json=""),
        block_delta(0, "input_json_delta", partial_json='{"command": "ec'),
        block_delta(0, "input_json_delta", partial_json='ho hi"}'),
        block_stop(0),
        delta({"output_tokens": 89}, "tool_use"),
        STOP,
    )
    facts = tap_of(stream, size=13).result()
    assert facts.usage == Usage(input=472, output=89)
    assert facts.stop_reason == "tool_use"
    assert facts.complete


def test_thinking_stream_reports_reasoning_inside_output() -> None:
    stream = sse(
        start({"input_tokens": 85, "output_tokens": 3}),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(0, "thinking_delta", thinking="Let me think: 27 * 453..."),
        block_delta(
            0, "signature_delta", signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk"
        ),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, "text_delta", text="12,231"),
        block_stop(1),
        delta(
            {"output_tokens": 420, "output_tokens_details": {"thinking_tokens": 380}}, "end_turn"
        ),
        STOP,
    )
    assert tap_of(stream, size=64).result().usage == Usage(input=85, output=420, reasoning=380)


def test_web_search_deltas_replace_input_and_output_instead_of_adding() -> None:
    stream = sse(
        start({"input_tokens": 2679, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": 3}),
        block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"}),
        block_delta(0, "input_json_delta", partial_json='{"query": "weather"}'),
        block_stop(0),
        delta({"input_tokens": 5120, "output_tokens": 200,
               "server_tool_use": {"web_search_requests": 1}}),
        PING,
        delta({"input_tokens": 10682, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": 510,
               "server_tool_use": {"web_search_requests": 1}}, "end_turn"),
        STOP,
    )  # fmt: skip
    usage = tap_of(stream).result().usage
    assert usage == Usage(input=10682, output=510, web_search_requests=1)


def test_null_and_missing_delta_fields_never_overwrite() -> None:
    stream = sse(
        start({**CLAUDE_CODE_USAGE, "output_tokens": 1}),
        delta({"input_tokens": None, "cache_read_input_tokens": None,
               "server_tool_use": None, "output_tokens": 7}, "end_turn"),
        STOP,
    )  # fmt: skip
    assert tap_of(stream).result().usage == CLAUDE_CODE_TOKENS


@pytest.mark.parametrize(
    ("first", "later", "expected_5m", "expected_1h"),
    [
        ({"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 20}, 60, 40, 20),
        ({"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 20}, 90, 70, 20),
        ({"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 20}, 50, 30, 20),
        ({"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 20}, 10, 0, 10),
        ({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 60}, 60, 0, 60),
        (None, 60, 60, 0),
    ],
)
def test_a_delta_cache_total_keeps_the_start_split_and_moves_the_change_to_5m(
    first: dict[str, int] | None, later: int, expected_5m: int, expected_1h: int
) -> None:
    opening: Json = {"input_tokens": 5, "cache_creation_input_tokens": 60, "output_tokens": 1}
    if first is not None:
        opening["cache_creation"] = first
    stream = sse(start(opening), delta({"cache_creation_input_tokens": later, "output_tokens": 9}))
    usage = tap_of(stream).result().usage
    assert (usage.cache_write_5m, usage.cache_write_1h) == (expected_5m, expected_1h)


@pytest.mark.parametrize(
    ("usage", "expected_5m", "expected_1h"),
    [
        ({"cache_creation_input_tokens": 60}, 60, 0),
        ({"cache_creation_input_tokens": 60, "cache_creation": None}, 60, 0),
        ({"cache_creation_input_tokens": 50, "cache_creation": {
            "ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}}, 30, 20),
        ({"cache_creation": {"ephemeral_5m_input_tokens": 0,
                             "ephemeral_1h_input_tokens": 2048}}, 0, 2048),
    ],
)  # fmt: skip
def test_json_cache_writes_split_by_ttl_with_unexplained_writes_at_5m(
    usage: Json, expected_5m: int, expected_1h: int
) -> None:
    body = json.dumps({"type": "message", "usage": {"input_tokens": 3, **usage}}).encode()
    facts = tap_of(body, JSON).result()
    assert (facts.usage.cache_write_5m, facts.usage.cache_write_1h) == (expected_5m, expected_1h)


def test_an_error_event_mid_stream_keeps_the_usage_seen_and_is_not_complete() -> None:
    stream = TEXT_STREAM.split(b"event: content_block_stop")[0] + sse(
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    )
    facts = tap_of(stream, size=50).result()
    assert facts.error_type == "overloaded_error"
    assert not facts.complete
    assert facts.usage == Usage(input=11, cache_write_5m=40, cache_write_1h=20, cache_read=300,
                                output=1)  # fmt: skip


def test_a_stream_cut_before_message_stop_reports_what_was_seen() -> None:
    cut = TEXT_STREAM.index(b"event: message_stop")
    tap = tap_of(TEXT_STREAM[: cut - 30])  # inside the message_delta event: not yet counted
    assert tap.result().usage.output == 1
    assert not tap.result().complete
    tap.feed(TEXT_STREAM[cut - 30 : cut])
    facts = tap.result()
    assert facts.usage == CLAUDE_CODE_TOKENS
    assert facts.stop_reason == "end_turn"
    assert not facts.complete


def test_result_is_a_snapshot_that_later_chunks_do_not_change() -> None:
    half = len(TEXT_STREAM) // 2
    tap = tap_of(TEXT_STREAM[:half])
    early = tap.result()
    tap.feed(TEXT_STREAM[half:])
    assert early.usage.output == 1
    assert not early.complete
    assert tap.result().complete


def test_model_id_tier_geo_and_speed_come_from_message_start() -> None:
    stream = sse(
        start({"input_tokens": 1, "output_tokens": 1, "service_tier": "priority",
               "inference_geo": "us", "speed": "fast"}, model="claude-opus-5"),
        delta({"output_tokens": 4}, "max_tokens"),
        STOP,
    )  # fmt: skip
    facts = tap_of(stream).result()
    assert (facts.model, facts.service_tier, facts.inference_geo, facts.speed) == (
        "claude-opus-5",
        "priority",
        "us",
        "fast",
    )
    assert facts.stop_reason == "max_tokens"


def test_a_gzip_compressed_stream_is_metered_decoded() -> None:
    facts = tap_of(gzip.compress(TEXT_STREAM), SSE, "gzip", size=17).result()
    assert facts.usage == CLAUDE_CODE_TOKENS
    assert facts.complete


def test_a_corrupt_event_is_skipped_and_counted_without_raising() -> None:
    stream = (
        sse(start({"input_tokens": 9, "output_tokens": 1}))
        + (b"event: message_delta\ndata: {not json\n\n")
        + sse(STOP)
    )
    tap = tap_of(stream)
    assert tap.result().usage == Usage(input=9, output=1)
    assert tap.problems == ("unparseable",)


JSON_MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hi! ✓"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {**CLAUDE_CODE_USAGE, "inference_geo": "us",
              "server_tool_use": {"web_search_requests": 2}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (None, lambda body: body),
        ("gzip", gzip.compress),
        ("br", brotli.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
    ],
)
def test_a_json_body_plain_or_compressed_maps_exactly(
    encoding: str | None, compress: Callable[[bytes], bytes]
) -> None:
    body = compress(json.dumps(JSON_MESSAGE).encode())
    facts = tap_of(body, "application/json", encoding, size=10).result()
    tokens = Usage(input=11, cache_write_5m=40, cache_write_1h=20, cache_read=300, output=7,
                   web_search_requests=2)  # fmt: skip
    assert facts.usage == tokens
    assert (facts.model, facts.message_id, facts.stop_reason) == (
        "claude-sonnet-4-6",
        "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "end_turn",
    )
    assert (facts.service_tier, facts.inference_geo) == ("standard", "us")
    assert facts.complete
    assert facts.saw_usage


def test_a_json_error_body_sets_the_error_type() -> None:
    body = error_payload(529)  # an upstream's overloaded_error
    facts = tap_of(body, JSON).result()
    assert facts.error_type == "overloaded_error"
    assert not facts.saw_usage
    assert facts.usage == Usage()


def test_a_truncated_json_body_is_not_complete() -> None:
    body = json.dumps(JSON_MESSAGE).encode()
    tap = tap_of(body[:-5], JSON)
    assert not tap.result().complete
    tap.feed(body[-5:])
    assert tap.result().complete
    assert tap.result().usage.output == 7


def test_a_corrupt_gzip_body_does_not_raise_and_meters_nothing() -> None:
    tap = tap_of(b"\x1f\x8b this is not gzip" * 10, JSON, "gzip", size=7)
    facts = tap.result()
    assert (facts.complete, facts.saw_usage, facts.usage) == (False, False, Usage())
    assert tap.problems == ("undecodable_body",)


def test_an_unsupported_encoding_does_not_raise_and_meters_nothing() -> None:
    tap = tap_of(b"\x00\x01\x02", JSON, "compress")
    assert tap.result().usage == Usage()
    assert tap.problems == ("undecodable_body",)


def test_a_json_body_past_the_cap_is_dropped_without_holding_it() -> None:
    tap = AnthropicTap(JSON, None)
    piece = b" " * (8 * 1024 * 1024)
    for _ in range(MAX_JSON_BODY_BYTES // len(piece) + 1):
        tap.feed(piece)
    assert not tap.result().complete
    assert tap.problems == ("oversized_body",)


def test_an_unrelated_content_type_is_ignored() -> None:
    tap = tap_of(b"<html>502 Bad Gateway</html>", "text/html")
    assert tap.result().usage == Usage()
    assert not tap.result().complete


@pytest.mark.parametrize(
    ("path", "metered"),
    [
        ("/v1/messages", True),
        ("/v1/messages/count_tokens", False),
        ("/v1/messages/batches", False),
        ("/v1/messages/batches/msgbatch_01/results", False),
        ("/v1/models", False),
        ("/v1/files", False),
        ("/v1/complete", False),
    ],
)
def test_only_the_messages_endpoint_is_metered(path: str, metered: bool) -> None:
    assert is_metered_path(path) is metered


def test_error_body_is_anthropic_shaped() -> None:
    assert json.loads(error_body(Failure.UPSTREAM_UNREACHABLE, "upstream unreachable")) == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream unreachable"},
    }
    assert (
        json.loads(error_body(Failure.UPSTREAM_TIMEOUT, "timed out"))["error"]["type"]
        == "timeout_error"
    )
    assert ANTHROPIC == "anthropic"


def test_the_provider_meters_only_posts_to_messages_and_builds_taps() -> None:
    anthropic = provider("https://api.anthropic.com")
    assert (anthropic.name, anthropic.upstream, anthropic.prefix) == (
        "anthropic",
        "https://api.anthropic.com",
        "",
    )
    assert anthropic.is_metered("POST", "/v1/messages")
    assert not is_metered("GET", "/v1/messages")
    tap = anthropic.make_tap(SSE, None)
    tap.feed(TEXT_STREAM)
    assert tap.result().usage == CLAUDE_CODE_TOKENS
    assert anthropic.error_body is error_body


# --- usage beyond the top level, the end of a stream, absurd numbers ---------------------------

ADVISED = {
    "input_tokens": 1760,
    "cache_read_input_tokens": 412,
    "cache_creation_input_tokens": 0,
    "output_tokens": 531,
    "iterations": [
        {
            "type": "message",
            "input_tokens": 412,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "output_tokens": 89,
        },
        {
            "type": "advisor_message",
            "model": "claude-opus-4-8",
            "input_tokens": 823,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1612,
        },
        {
            "type": "message",
            "input_tokens": 1348,
            "cache_read_input_tokens": 412,
            "cache_creation_input_tokens": 0,
            "output_tokens": 442,
        },
    ],
}  # fmt: skip  (the advisor-tool page's example, as it prints it)


@pytest.mark.parametrize("as_stream", [False, True], ids=["json", "sse"])
def test_iterations_are_kept_with_their_models_and_summed(as_stream: bool) -> None:
    if as_stream:
        top = {k: v for k, v in ADVISED.items() if k != "iterations"}
        body = sse(start({**top, "output_tokens": 1}, "claude-sonnet-4-6"), delta(ADVISED), STOP)
        facts = tap_of(body, size=7).result()
    else:
        answer = {**JSON_MESSAGE, "model": "claude-sonnet-4-6", "usage": ADVISED}
        facts = tap_of(json.dumps(answer).encode(), JSON).result()
    assert [(i.kind, i.model) for i in facts.iterations] == [
        ("message", "claude-sonnet-4-6"),  # an executor step names no model: the response's
        ("advisor_message", "claude-opus-4-8"),
        ("message", "claude-sonnet-4-6"),
    ]
    assert facts.iterations[2].usage == Usage(input=1348, cache_read=412, output=442)
    assert facts.usage == Usage(input=2583, cache_read=412, output=2143)
    assert facts.model == "claude-sonnet-4-6"
    assert facts.problems == ()


def test_the_fallback_model_that_served_is_the_events_model() -> None:
    iterations = [
        {"type": "message", "model": "claude-fable-5", "input_tokens": 535, "output_tokens": 120},
        {"type": "fallback_message", "model": "claude-opus-4-8", "input_tokens": 655,
         "output_tokens": 264},
    ]  # fmt: skip
    usage = {"input_tokens": 655, "output_tokens": 264, "iterations": iterations}
    body = sse(start({"input_tokens": 535, "output_tokens": 1}, "claude-fable-5"), delta(usage))
    facts = tap_of(body + sse(STOP)).result()
    assert facts.model == "claude-opus-4-8"  # message_start named the model that declined
    assert [i.model for i in facts.iterations] == ["claude-fable-5", "claude-opus-4-8"]


def test_finish_reads_a_last_event_whose_blank_line_never_came() -> None:
    body = sse(start({**CLAUDE_CODE_USAGE, "output_tokens": 1}), delta({"output_tokens": 7}))
    tap = tap_of(body.removesuffix(b"\n\n"), size=5)
    assert tap.result().usage.output == 1  # the placeholder: the delta is still pending
    tap.finish()
    tap.finish()  # idempotent
    assert tap.result().usage == CLAUDE_CODE_TOKENS


def test_finish_flushes_a_compressed_stream_too() -> None:
    body = gzip.compress(sse(start(CLAUDE_CODE_USAGE), delta({"output_tokens": 9})).rstrip())
    tap = tap_of(body, SSE, "gzip", size=3)
    tap.finish()
    assert tap.result().usage.output == 9


@pytest.mark.parametrize(
    ("reported", "recorded", "problems"),
    [
        (
            {"output_tokens": 666_666_666_666_666},
            Usage(input=3, output=10**12),
            ("usage_over_cap",),
        ),
        ({"output_tokens": 10**30}, Usage(input=3, output=10**12), ("usage_over_cap",)),
        ({"output_tokens": 1e30}, Usage(input=3, output=10**12), ("usage_over_cap",)),
        ({"output_tokens": -5}, Usage(input=3), ("usage_negative",)),
        ({"output_tokens": 7.5}, Usage(input=3, output=7), ("usage_not_integer",)),
        ({"output_tokens": 7.0}, Usage(input=3, output=7), ()),  # JSON's 7.0 is the integer 7
        ({"output_tokens": "7"}, Usage(input=3), ("usage_not_integer",)),
        ({"output_tokens": True}, Usage(input=3), ("usage_not_integer",)),
        ({"iterations": {"type": "message"}}, Usage(input=3), ("bad_iterations",)),
        ({"iterations": [{"input_tokens": 5}]}, Usage(input=3), ("bad_iterations",)),
    ],
)
def test_absurd_numbers_are_made_safe_and_named(
    reported: Json, recorded: Usage, problems: tuple[str, ...]
) -> None:
    answer = {**JSON_MESSAGE, "usage": {"input_tokens": 3, **reported}}
    facts = tap_of(json.dumps(answer).encode(), JSON).result()
    assert (facts.usage, facts.problems) == (recorded, problems)
    assert facts.distrusted == bool(problems)
