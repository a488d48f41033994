"""The SSE decoder yields exactly the events of the whole stream, however the network splits it."""

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sse import SSEDecoder, SSEEvent


def decode_whole(stream: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(stream) + decoder.flush()


def decode_chunks(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


def test_named_events_with_json_data() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start"}\n\n'
        b'event: ping\ndata: {"type": "ping"}\n\n'
    )
    assert decode_whole(stream) == [
        SSEEvent("message_start", '{"type":"message_start"}'),
        SSEEvent("ping", '{"type": "ping"}'),
    ]


def test_crlf_and_cr_line_ends_give_the_same_events_as_lf() -> None:
    lf = b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"
    assert decode_whole(lf.replace(b"\n", b"\r\n")) == decode_whole(lf)
    assert decode_whole(lf.replace(b"\n", b"\r")) == decode_whole(lf)
    assert decode_whole(lf) == [SSEEvent("a", "1"), SSEEvent("b", "2")]


def test_multi_line_data_is_joined_with_newlines_and_space_after_colon_is_optional() -> None:
    stream = b"data: first\ndata:second\ndata:  indented\ndata\n\n"
    assert decode_whole(stream) == [SSEEvent(None, "first\nsecond\n indented\n")]


def test_comments_ids_retry_and_unknown_fields_are_ignored() -> None:
    stream = b": ping\nid: 7\nretry: 100\nfoo: bar\nevent: x\ndata: y\n\n:\n\n"
    assert decode_whole(stream) == [SSEEvent("x", "y")]


def test_an_event_without_data_is_not_dispatched_and_its_name_does_not_leak() -> None:
    stream = b"event: lonely\n\ndata: next\n\n"
    assert decode_whole(stream) == [SSEEvent(None, "next")]


def test_a_leading_byte_order_mark_is_skipped_even_when_split() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"\xef") + decoder.feed(b"\xbb\xbfevent: a\ndata: 1\n\n")
    assert events == [SSEEvent("a", "1")]


def test_a_multibyte_character_split_between_chunks_survives() -> None:
    stream = "event: d\ndata: héllo ✓ 🎉\n\n".encode()
    cut = stream.index("🎉".encode()) + 2
    assert decode_chunks([stream[:cut], stream[cut:]]) == [SSEEvent("d", "héllo ✓ 🎉")]


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\r") + decoder.feed(b"\ndata: b\r") + decoder.feed(b"\n\r\n")
    assert events == [SSEEvent(None, "a\nb")]


def test_an_empty_chunk_between_cr_and_lf_changes_nothing() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\r") + decoder.feed(b"") + decoder.feed(b"\n\r\n")
    assert events == [SSEEvent(None, "a")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode_whole(b"data: \xff\xfe\n\n") == [SSEEvent(None, "\ufffd\ufffd")]


def test_flush_dispatches_a_last_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'event: message_delta\ndata: {"n": 1}') == []
    assert decoder.flush() == [SSEEvent("message_delta", '{"n": 1}')]
    assert decoder.flush() == []


def test_an_oversized_event_is_dropped_counted_and_the_stream_goes_on() -> None:
    stream = b"data: " + b"x" * 100 + b"\n\nevent: ok\ndata: small\n\n"
    decoder = SSEDecoder(max_event_bytes=64)
    assert decoder.feed(stream) == [SSEEvent("ok", "small")]
    assert decoder.dropped_events == 1


def test_an_oversized_event_built_from_many_lines_is_dropped() -> None:
    stream = b"data: 0123456789\n" * 10 + b"\ndata: after\n\n"
    decoder = SSEDecoder(max_event_bytes=50)
    assert decoder.feed(stream) == [SSEEvent(None, "after")]
    assert decoder.dropped_events == 1


def test_an_endless_line_does_not_grow_memory_past_the_cap() -> None:
    decoder = SSEDecoder(max_event_bytes=4096)
    decoder.feed(b"data: ")
    for _ in range(1000):  # 1 MB of one line, with no line end in sight
        assert decoder.feed(b"y" * 1024) == []
    assert sum(len(piece) for piece in decoder._partial) <= 4096
    assert decoder.feed(b"\n\ndata: later\n\n") == [SSEEvent(None, "later")]
    assert decoder.dropped_events == 1


def test_a_long_line_arriving_byte_by_byte_is_joined_correctly() -> None:
    value = "z" * 5000
    stream = f"data: {value}\n\n".encode()
    assert decode_chunks([stream[i : i + 1] for i in range(len(stream))]) == [SSEEvent(None, value)]


# --- property: any split of a valid stream decodes like the whole stream ---------------------

_names = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    min_size=1,
    max_size=12,
)
_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=30,
)
_events = st.tuples(
    st.one_of(st.none(), _names),
    st.lists(_values, min_size=1, max_size=4),
    st.booleans(),  # a comment line before the event
    st.booleans(),  # no space after "data:" where the value allows it
)
# (name, data lines, a comment line before, no space after "data:")
_Event = tuple[str | None, list[str], bool, bool]
# (the whole stream, the stream split in chunks, the events it holds)
_Case = tuple[bytes, list[bytes], list[SSEEvent]]


def _serialize(events: list[_Event], newline: bytes) -> bytes:
    lines: list[str] = []
    for name, values, comment, tight in events:
        if comment:
            lines.append(": keep-alive")
        if name is not None:
            lines.append(f"event: {name}")
        for value in values:
            sep = ":" if tight and not value.startswith(" ") else ": "
            lines.append(f"data{sep}{value}")
        lines.append("")
    return b"".join(line.encode() + newline for line in lines)


@st.composite
def _split_streams(draw: st.DrawFn) -> _Case:
    events = draw(st.lists(_events, max_size=6))
    stream = _serialize(events, draw(st.sampled_from([b"\n", b"\r\n", b"\r"])))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    expected = [SSEEvent(name, "\n".join(values)) for name, values, _, _ in events]
    return stream, chunks, expected


@settings(max_examples=300, deadline=None)
@given(_split_streams())
def test_any_split_gives_the_same_events_as_the_whole_stream(case: _Case) -> None:
    stream, chunks, expected = case
    assert decode_whole(stream) == expected
    assert decode_chunks(chunks) == expected


@settings(max_examples=300, deadline=None)
@given(_split_streams(), st.sets(_names, max_size=3))
def test_a_wanted_filter_keeps_exactly_the_wanted_and_unnamed_events(
    case: _Case, wanted: set[str]
) -> None:
    _, chunks, expected = case
    decoder = SSEDecoder(wanted=frozenset(wanted))
    got = [event for chunk in chunks for event in decoder.feed(chunk)] + decoder.flush()
    assert got == [e for e in expected if e.event is None or e.event in wanted]


def test_a_wanted_filter_skips_deltas_but_keeps_usage_events() -> None:
    stream = (
        b'event: message_start\ndata: {"a":1}\n\n'
        b'event: content_block_delta\ndata: {"huge":"' + b"x" * 5000 + b'"}\n\n'
        b"event: ping\ndata: {}\n\n"
        b'event: message_delta\ndata: {"b":2}\n\n'
    )
    decoder = SSEDecoder(wanted=frozenset({"message_start", "message_delta"}))
    got = [e for i in range(0, len(stream), 7) for e in decoder.feed(stream[i : i + 7])]
    assert got == [SSEEvent("message_start", '{"a":1}'), SSEEvent("message_delta", '{"b":2}')]
