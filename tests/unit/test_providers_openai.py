"""The OpenAI tap reads the tokens a user is billed for; include_usage is added and taken back."""

import gzip
import json
import zlib
from typing import Any

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.failures import Failure
from proxy.providers.openai import (
    FULL_PARSE_BYTES,
    OPENAI,
    OpenAITap,
    error_body,
    is_metered,
    provider,
    usage_from,
)
from proxy.providers.openai_stream import (
    USAGE_ADDED,
    UsageChunkFilter,
    make_filter,
    prepare,
    strip_added_usage,
)
from proxy.usage import Usage

SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"
CHAT_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 192},
}
CHAT_TOKENS = Usage(input=86, cache_read=1920, output=300, reasoning=192)
HEAD = (
    '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    '"model":"gpt-5-2025-08-07","service_tier":"default","system_fingerprint":null'
)


def chunk(choices: str, usage: str | None = None, obfuscation: str | None = None) -> bytes:
    body = f'{HEAD},"choices":{choices}'
    if usage is not None:
        body += f',"usage":{usage}'
    if obfuscation is not None:
        body += f',"obfuscation":"{obfuscation}"'
    return f"data: {body}}}\n\n".encode()


def delta(content: str, finish: str | None = None) -> str:
    reason = "null" if finish is None else f'"{finish}"'
    choice = f'{{"index":0,"delta":{{"content":"{content}"}},"logprobs":null'
    return f'[{choice},"finish_reason":{reason}}}]'


def chat_stream(include_usage: bool, obfuscate: bool = True) -> bytes:
    """A chat stream as OpenAI sends it, with or without ``include_usage``."""
    null = "null" if include_usage else None
    parts = [
        chunk(delta(""), null, "ab" if obfuscate else None),
        chunk(delta("Hel"), null, "abc" if obfuscate else None),
        chunk(delta("lo, usage: null"), null, "a" if obfuscate else None),
        chunk(delta("", "stop"), null, "abcd" if obfuscate else None),
    ]
    if include_usage:
        parts.append(chunk("[]", json.dumps(CHAT_USAGE), "xy" if obfuscate else None))
    return b"".join(parts) + b"data: [DONE]\n\n"


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        for name, data in events
    )


def tap_of(body: bytes, content_type: str = SSE, encoding: str | None = None) -> OpenAITap:
    tap = OpenAITap(content_type, encoding)
    tap.feed(body)
    return tap


# --- usage mapping ----------------------------------------------------------------------------


def test_chat_usage_subtracts_cached_tokens_from_prompt() -> None:
    assert usage_from(CHAT_USAGE) == CHAT_TOKENS


def test_responses_usage_maps_cache_writes_once() -> None:
    usage = {
        "input_tokens": 10_000,
        "input_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 6000},
        "output_tokens": 100,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 10_100,
    }
    got = usage_from(usage)
    assert got == Usage(input=2000, cache_write_5m=6000, cache_read=2000, output=100, reasoning=64)
    assert got.total_input() == 10_000  # every prompt token counted exactly once


def test_embeddings_usage_is_all_input() -> None:
    assert usage_from({"prompt_tokens": 8, "total_tokens": 8}) == Usage(input=8)


def test_inconsistent_usage_never_goes_negative() -> None:
    usage = {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}}
    assert usage_from(usage) == Usage(input=0, cache_read=50)


# --- paths, errors, the provider --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "metered"),
    [
        ("POST", "/v1/chat/completions", True),
        ("POST", "/v1/responses", True),
        ("POST", "/v1/responses/compact", True),
        ("POST", "/v1/completions", True),
        ("POST", "/v1/embeddings", True),
        ("GET", "/v1/responses/resp_1", False),
        ("POST", "/v1/responses/input_tokens", False),
        ("GET", "/v1/models", False),
        ("POST", "/v1/files", False),
        ("GET", "/v1/chat/completions", False),
    ],
)
def test_only_billed_endpoints_are_metered(method: str, path: str, metered: bool) -> None:
    assert is_metered(method, path) is metered


def test_error_body_has_openais_shape() -> None:
    body = json.loads(error_body(Failure.UPSTREAM_UNREACHABLE, "tokenmeter: upstream unreachable"))
    assert body == {
        "error": {
            "message": "tokenmeter: upstream unreachable",
            "type": "server_error",
            "param": None,
            "code": "upstream_unreachable",
        }
    }
    assert (
        json.loads(error_body(Failure.UPSTREAM_TIMEOUT, "m"))["error"]["code"] == "upstream_timeout"
    )


def test_provider_is_served_under_the_openai_prefix() -> None:
    openai = provider("https://api.openai.com")
    assert (openai.name, openai.prefix, openai.upstream) == (
        OPENAI,
        "/openai",
        "https://api.openai.com",
    )
    assert openai.prepare is prepare
    assert openai.make_filter is make_filter


# --- the tap ----------------------------------------------------------------------------------


def test_chat_json_answer_gzipped() -> None:
    answer = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "model": "gpt-4.1-2025-04-14",
        "service_tier": "default",
        "choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}],
        "usage": CHAT_USAGE,
    }
    facts = tap_of(gzip.compress(json.dumps(answer, indent=2).encode()), JSON, "gzip").result()
    assert facts.usage == CHAT_TOKENS
    assert (facts.model, facts.message_id, facts.service_tier) == (
        "gpt-4.1-2025-04-14",
        "chatcmpl-9",
        "default",
    )
    assert facts.stop_reason == "stop"
    assert facts.complete


def test_chat_stream_with_usage_is_read_at_any_split() -> None:
    body = chat_stream(include_usage=True)
    whole = tap_of(body).result()
    assert whole.usage == CHAT_TOKENS
    assert whole.model == "gpt-5-2025-08-07"
    assert whole.stop_reason == "stop"
    assert whole.complete
    tap = OpenAITap(SSE, None)
    for i in range(len(body)):
        tap.feed(body[i : i + 1])
    assert tap.result() == whole


def test_chat_stream_cut_before_usage_knows_the_model_only() -> None:
    body = chat_stream(include_usage=True)
    facts = tap_of(body[: body.index(b'"choices":[]')]).result()
    assert facts.model == "gpt-5-2025-08-07"
    assert facts.usage == Usage()
    assert not facts.saw_usage
    assert not facts.complete


def test_chat_stream_error_chunk_is_an_error() -> None:
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    facts = tap_of(chunk(delta("Hi")) + f"data: {json.dumps(error)}\n\n".encode()).result()
    assert facts.error_type == "server_error"


def test_responses_stream_reads_the_final_event() -> None:
    usage = {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 4096},
        "output_tokens": 700,
        "output_tokens_details": {"reasoning_tokens": 512},
    }
    base = {"id": "resp_1", "object": "response", "model": "gpt-5", "service_tier": "default"}
    body = sse(
        ("response.created", {"response": {**base, "status": "in_progress", "usage": None}}),
        ("response.output_text.delta", {"delta": "Hi"}),
        ("response.completed", {"response": {**base, "status": "completed", "usage": usage}}),
    )
    facts = tap_of(body).result()
    assert facts.usage == Usage(input=904, cache_read=4096, output=700, reasoning=512)
    assert (facts.model, facts.message_id, facts.stop_reason) == ("gpt-5", "resp_1", "completed")
    assert facts.complete
    assert facts.error_type is None
    cut = tap_of(body[: body.index(b"event: response.completed")]).result()
    assert (cut.model, cut.complete, cut.usage) == ("gpt-5", False, Usage())


def test_responses_stream_without_event_names_is_read_too() -> None:
    usage = {"input_tokens": 10, "output_tokens": 2}
    final = {"type": "response.completed", "response": {"model": "gpt-5", "usage": usage}}
    body = (
        b'data: {"type":"response.created","response":{"model":"gpt-5","usage":null}}\n\n'
        + f"data: {json.dumps(final)}\n\n".encode()
    )
    facts = tap_of(body).result()
    assert facts.usage == Usage(input=10, output=2)
    assert facts.complete


def test_responses_incomplete_and_failed() -> None:
    usage = {"input_tokens": 10, "output_tokens": 2}
    incomplete = {"model": "gpt-5", "status": "incomplete", "usage": usage}
    incomplete["incomplete_details"] = {"reason": "max_output_tokens"}
    facts = tap_of(sse(("response.incomplete", {"response": incomplete}))).result()
    assert (facts.stop_reason, facts.complete, facts.error_type) == (
        "max_output_tokens",
        True,
        None,
    )
    failed = {"model": "gpt-5", "status": "failed", "usage": usage}
    failed["error"] = {"code": "server_error", "message": "failed"}
    facts = tap_of(sse(("response.failed", {"response": failed}))).result()
    assert facts.error_type == "server_error"
    assert facts.usage == Usage(input=10, output=2)
    error = sse(("error", {"code": "rate_limit_exceeded", "message": "slow down", "param": None}))
    assert tap_of(error).result().error_type == "rate_limit_exceeded"


def test_failed_response_json_keeps_its_usage() -> None:
    failed: dict[str, Any] = {"object": "response", "model": "gpt-5", "status": "failed"}
    failed["error"] = {"code": "server_error", "message": "failed"}
    failed["usage"] = {"input_tokens": 10, "output_tokens": 2}
    facts = tap_of(json.dumps(failed).encode(), JSON).result()
    assert (facts.error_type, facts.usage) == ("server_error", Usage(input=10, output=2))


def test_error_json_answer() -> None:
    body = b'{"error": {"message": "bad", "type": "invalid_request_error", "param": null}}'
    facts = tap_of(body, JSON).result()
    assert facts.error_type == "invalid_request_error"
    assert facts.usage == Usage()


def test_large_embeddings_answer_reads_usage_from_its_tail() -> None:
    vector = [0.0123456789] * 3072
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(100)]
    answer: dict[str, Any] = {"object": "list", "data": data, "model": "text-embedding-3-large"}
    answer["usage"] = {"prompt_tokens": 160, "total_tokens": 160}
    body = json.dumps(answer).encode()
    assert len(body) > 4 * FULL_PARSE_BYTES  # held as head and tail only
    tap = OpenAITap(JSON, None)
    for i in range(0, len(body), 16384):
        tap.feed(body[i : i + 16384])
    facts = tap.result()
    assert facts.usage == Usage(input=160)
    assert facts.model == "text-embedding-3-large"


def test_corrupt_compressed_body_is_a_problem_not_a_crash() -> None:
    tap = tap_of(b"not gzip at all", JSON, "gzip")
    assert tap.problems == ("undecodable_body",)
    assert tap.result().usage == Usage()


# --- include_usage: prepare -------------------------------------------------------------------


def test_prepare_splices_include_usage_into_a_streamed_chat() -> None:
    body = '{"model":"gpt-5","messages":[{"role":"user","content":"héllo"}],"stream":true}'
    sent, note = prepare("POST", "/v1/chat/completions", body.encode())
    assert note == USAGE_ADDED
    assert sent == b'{"stream_options":{"include_usage":true},' + body[1:].encode()


def test_prepare_merges_existing_stream_options() -> None:
    body = b'{"model":"gpt-5","stream": true,"stream_options":{"include_obfuscation":false}}'
    sent, note = prepare("POST", "/v1/completions", body)
    assert note == USAGE_ADDED
    assert json.loads(sent)["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    sent, note = prepare("POST", "/v1/chat/completions", b'{"stream":true,"stream_options":null}')
    assert json.loads(sent) == {"stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", b'{"model":"gpt-5","stream":false}'),
        ("POST", "/v1/chat/completions", b'{"model":"gpt-5"}'),
        (
            "POST",
            "/v1/chat/completions",
            b'{"stream":true,"stream_options":{"include_usage":true}}',
        ),
        ("POST", "/v1/chat/completions", b'{"stream":true,"stream_options":"yes"}'),
        ("POST", "/v1/chat/completions", b'{"stream": true, "model": "gpt-'),
        ("POST", "/v1/chat/completions", b'{"messages":[{"content":"\\"stream\\": true"}]}'),
        ("POST", "/v1/responses", b'{"model":"gpt-5","stream":true}'),
        ("GET", "/v1/chat/completions", b'{"stream":true}'),
    ],
)
def test_prepare_leaves_every_other_request_byte_for_byte(
    method: str, path: str, body: bytes
) -> None:
    assert prepare(method, path, body) == (body, None)


# --- include_usage: the filter ----------------------------------------------------------------


@pytest.mark.parametrize("obfuscate", [True, False])
def test_filter_gives_the_stream_as_it_would_be_without_include_usage(obfuscate: bool) -> None:
    chunk_filter = make_filter(USAGE_ADDED, SSE, None)
    assert chunk_filter is not None
    body = chat_stream(include_usage=True, obfuscate=obfuscate)
    out = chunk_filter.filter(body) + chunk_filter.flush()
    assert out == chat_stream(include_usage=False, obfuscate=obfuscate)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_filter_gives_the_same_bytes_at_any_split(cuts: list[int]) -> None:
    body = chat_stream(include_usage=True)
    points = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    chunk_filter = UsageChunkFilter()
    out = b"".join(chunk_filter.filter(piece) for piece in pieces) + chunk_filter.flush()
    assert out == chat_stream(include_usage=False)


def test_filter_keeps_comments_crlf_and_usage_text_in_content() -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices":[{"delta":{"content":"\\"usage\\":null"}}],"usage":null}\r\n\r\n'
        b'data: {"usage":null,"choices":[{"delta":{}}]}\r\n\r\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":1}}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    expected = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices":[{"delta":{"content":"\\"usage\\":null"}}]}\r\n\r\n'
        b'data: {"choices":[{"delta":{}}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    chunk_filter = UsageChunkFilter()
    assert chunk_filter.filter(body) + chunk_filter.flush() == expected


def test_strip_keeps_a_chunk_that_has_choices_and_usage() -> None:
    event = b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}'
    assert strip_added_usage(event) == event


def compress(coding: str, pieces: list[bytes]) -> bytes:
    if coding == "gzip":
        z = zlib.compressobj(wbits=31)
        return b"".join(z.compress(p) + z.flush(zlib.Z_SYNC_FLUSH) for p in pieces) + z.flush()
    if coding == "deflate":
        return zlib.compress(b"".join(pieces))
    if coding == "br":
        compressed: bytes = brotli.compress(b"".join(pieces))
        return compressed
    return zstandard.ZstdCompressor().compress(b"".join(pieces))


def decompress(coding: str, body: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "deflate":
        return zlib.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_filter_recodes_a_compressed_stream(coding: str) -> None:
    body = compress(coding, [chat_stream(include_usage=True)])
    chunk_filter = make_filter(USAGE_ADDED, SSE, coding)
    assert chunk_filter is not None
    out = [chunk_filter.filter(body[i : i + 40]) for i in range(0, len(body), 40)]
    assert decompress(coding, b"".join(out) + chunk_filter.flush()) == chat_stream(False)


def test_filter_flushes_every_compressed_chunk_so_nothing_is_held_back() -> None:
    first = chunk(delta("Hel"), "null")
    chunk_filter = make_filter(USAGE_ADDED, SSE, "gzip")
    assert chunk_filter is not None
    z = zlib.compressobj(wbits=31)
    out = chunk_filter.filter(z.compress(first) + z.flush(zlib.Z_SYNC_FLUSH))
    assert zlib.decompressobj(wbits=31).decompress(out) == chunk(delta("Hel"))


def test_filter_is_made_only_when_the_proxy_added_usage_to_a_stream() -> None:
    assert make_filter(None, SSE, None) is None
    assert make_filter(USAGE_ADDED, JSON, None) is None  # e.g. a 400 error answer
    assert make_filter(USAGE_ADDED, SSE, "compress") is None  # cannot re-encode: left as sent


def test_filter_passes_a_corrupt_compressed_stream_through() -> None:
    chunk_filter = make_filter(USAGE_ADDED, SSE, "gzip")
    assert chunk_filter is not None
    assert chunk_filter.filter(b"not gzip") == b"not gzip"
    assert chunk_filter.filter(b"more") == b"more"
    assert chunk_filter.flush() == b""


def test_filter_flushes_a_last_event_without_its_blank_line() -> None:
    chunk_filter = UsageChunkFilter()
    assert chunk_filter.filter(b'data: {"choices":[1],"usage":null}') == b""
    assert chunk_filter.flush() == b'data: {"choices":[1]}'


def test_absurd_counts_are_capped_and_named() -> None:
    problems: set[str] = set()
    usage = usage_from({"prompt_tokens": 10**15, "completion_tokens": -3}, problems)
    assert usage == Usage(input=10**12)
    assert problems == {"usage_over_cap", "usage_negative"}


def test_a_chat_stream_cut_before_its_usage_chunk_says_nothing_of_usage() -> None:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-5", "choices": []}
    tap = OpenAITap("text/event-stream", None)
    tap.feed(f"data: {json.dumps(chunk)}\n\n".encode())
    tap.finish()
    facts = tap.result()
    assert (facts.model, facts.saw_usage, facts.metered, facts.complete) == (
        "gpt-5",
        False,
        True,
        False,
    )
