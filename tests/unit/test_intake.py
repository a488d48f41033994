"""What a client may send: the raw request path re-validated, the body read within its cap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.failures import Failure
from proxy.intake import Refusal, check_path, check_query, raw_target, read_body

ACCEPTED = [
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/models/claude-opus-4-8",
    "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results",
    "/v1/models/ft:gpt-4o-mini:org:custom:abc123",  # ':' is a path character
    "/v1/models/ft%3Agpt-4o-mini",  # ... and may come encoded
    "/v1/models/%E4%B8%AD",  # UTF-8, encoded: forwarded as sent, never a 500
    "/v1/files/a%20b",
    "/v1/files/.hidden",  # a dot that starts a name is not a dot segment
    "/v1/files/a..b",
    "/v1/x/!$&'()*+,;=@~",
]

REFUSED = [
    ("/v1/models%0D%0AX-Injected:%20yes%0D%0A", "'%0D' encodes a control character"),
    ("/v1/messages%0D%0A%0D%0APOST%20/v1/messages", "'%0D' encodes a control character"),
    ("/v1/models%0a", "'%0a' encodes a control character"),
    ("/v1/models%00", "'%00' encodes a control character"),
    ("/v1/models%7F", "'%7F' encodes a control character"),
    ("/v1/models/%C2%85", "encodes a control character"),  # U+0085 (NEL), as UTF-8
    ("/v1/%2E%2E/admin", "'%2E' encodes '.'"),
    ("/v1/%2e./admin", "'%2e' encodes '.'"),
    ("/v1/../admin", "a '..' segment"),
    ("/v1/./messages", "a '.' segment"),
    ("/v1/models%3Fbeta=true", "'%3F' encodes '?'"),
    ("/v1/models%23frag", "'%23' encodes '#'"),
    ("/v1/a%2Fb", "'%2F' encodes '/'"),
    ("/v1/a%5Cb", "'%5C' encodes '\\\\'"),
    ("/v1/%252F", "'%25' encodes '%'"),  # no double decoding upstream either
    ("/v1/%6Dessages", "'%6D' encodes 'm'"),  # the metered path in disguise
    ("/v1/models/%FF", "not UTF-8"),
    ("/v1/models/%E4%B8", "not UTF-8"),
    ("/v1/models/%G1", "'%G1' is not a percent-escape"),
    ("/v1/models/%", "'%' is not a percent-escape"),
    ("/v1//messages", "empty segment"),
    ("/v1/messages/", "empty segment"),
    ("/v1/models\r\nX-Injected: yes", "the byte 0x0D"),
    ("/v1/models x", "the byte 0x20"),
    ("/v1/models\x00", "the byte 0x00"),
    ("/v1/models/\xff\xfe", "the byte 0xFF"),  # raw non-UTF-8 bytes, as latin-1
    ("/v1/models/<script>", "the character '<'"),
    ("v1/messages", "does not start with '/'"),
]


@pytest.mark.parametrize("path", ACCEPTED)
def test_valid_paths_are_forwarded_as_sent(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(("path", "problem"), REFUSED)
def test_paths_that_could_mean_something_else_upstream_are_refused(path: str, problem: str) -> None:
    with pytest.raises(Refusal) as refused:
        check_path(path)
    assert (refused.value.status, refused.value.reason) == (400, "bad_path")
    assert problem in refused.value.message


def test_the_raw_path_is_used_not_the_decoded_one() -> None:
    scope = {"path": "/v1/models\r\nX: y", "raw_path": b"/v1/models%0D%0AX:%20y"}
    assert raw_target(scope) == "/v1/models%0D%0AX:%20y"
    assert raw_target({"path": "/v1/models\r\nX: y"}) == "/v1/models%0D%0AX%3A%20y"


@pytest.mark.parametrize("query", [b"", b"beta=true", b"a=%0D%0A&b=%FF", b"q=\"'<>{}|^`"])
def test_a_query_string_is_passed_as_received(query: bytes) -> None:
    assert check_query(query) == query


@pytest.mark.parametrize("query", [b"a=b\r\nX: y", b"a b", b"a=\x00", b"a=\xff"])
def test_a_query_with_raw_control_space_or_non_ascii_bytes_is_refused(query: bytes) -> None:
    with pytest.raises(Refusal, match="query string refused"):
        check_query(query)


def _receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def _read(receive: Any, headers: dict[bytes, bytes], cap: int) -> bytes | None:
    return asyncio.run(read_body(receive, headers, cap))


def test_a_body_in_parts_is_joined() -> None:
    receive = _receiver(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    )
    assert _read(receive, {}, 4) == b"abcd"


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    receive = _receiver()  # receive() would fail: nothing may be read
    with pytest.raises(Refusal) as refused:
        _read(receive, {b"content-length": b"5"}, 4)
    assert (refused.value.status, refused.value.failure) == (413, Failure.BODY_TOO_LARGE)


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap() -> None:
    receive = _receiver(
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"de", "more_body": True},
        # a third message would fail: reading stops at the cap
    )
    with pytest.raises(Refusal, match="larger than"):
        _read(receive, {}, 4)


def test_a_body_the_client_abandoned_is_none() -> None:
    receive = _receiver(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    )
    assert _read(receive, {b"content-length": b"4"}, 10) is None
    assert _read(_receiver({"type": "http.disconnect"}), {}, 10) is None
