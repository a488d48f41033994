"""The frame both usage taps share: a body is decoded, routed and held the same way for each."""

import gzip
import json

from proxy.providers.body import BodyTap, JsonBody, load_object, media_type
from proxy.sse import SSEEvent
from proxy.usage import ResponseFacts

STREAM = b"event: keep\ndata: 1\n\nevent: skip\ndata: 2\n\ndata: 3\n\n"


class RecordingTap(BodyTap):
    """Keeps every event it is handed; fails on data ``boom``, as a reader with a bug would."""

    __slots__ = ("events",)

    def __init__(
        self,
        content_type: str | None,
        content_encoding: str | None = None,
        body: JsonBody | None = None,
        wanted: frozenset[str] | None = None,
    ) -> None:
        super().__init__(content_type, content_encoding, body or JsonBody(1024), wanted)
        self.events: list[SSEEvent] = []

    def _read(self) -> ResponseFacts:
        return ResponseFacts()

    def _on_event(self, event: SSEEvent) -> None:
        if event.data == "boom":
            raise RuntimeError("a reader bug")
        self.events.append(event)


def test_sse_events_are_decoded_and_routed_with_the_wanted_filter() -> None:
    tap = RecordingTap("text/event-stream; charset=utf-8", "gzip", wanted=frozenset({"keep"}))
    tap.feed(gzip.compress(STREAM))
    assert tap.events == [SSEEvent("keep", "1"), SSEEvent(None, "3")]
    assert tap.problems == ()


def test_a_fault_in_the_reading_stops_the_tap_instead_of_raising() -> None:
    tap = RecordingTap("text/event-stream")
    tap.feed(b"data: boom\n\n")
    tap.feed(b"data: after\n\n")
    assert tap.events == []
    assert tap.problems == ("unparseable",)


def test_a_json_body_is_held_for_the_reader_and_other_media_types_are_ignored() -> None:
    body = JsonBody(1024)
    tap = RecordingTap("Application/JSON", body=body)
    tap.feed(b'{"usage": ')
    tap.feed(b'{"output_tokens": 7}}')
    assert body.parse() == {"usage": {"output_tokens": 7}}
    html = JsonBody(1024)
    RecordingTap("text/html", body=html).feed(b'{"usage": {}}')
    assert html.parse() is None


def test_a_body_past_a_limit_without_edges_overflows_and_stops_the_tap() -> None:
    body = JsonBody(10)
    tap = RecordingTap(None, body=body)
    tap.feed(b'{"a": 1}')
    tap.feed(b'{"b": 2}')
    assert body.overflowed
    assert body.parse() is None
    assert tap.problems == ("oversized_body",)


def test_a_body_past_a_limit_with_edges_keeps_its_head_and_tail() -> None:
    body = JsonBody(20, edge=8)
    data = b'{"id":"x","data":[' + b"0," * 50 + b'0],"usage":1}'
    for i in range(0, len(data), 7):
        body.add(data[i : i + 7])
    assert not body.whole
    assert not body.overflowed
    assert body.edges() == (data[:8].decode(), data[-8:].decode())
    assert body.parse() is None


def test_a_growing_body_is_parsed_again_only_when_more_arrived() -> None:
    body = JsonBody(1024)
    body.add(b'{"model": "gpt-5"')
    assert body.parse() is None  # incomplete: not yet JSON
    body.add(b"}")
    first = body.parse()
    assert first == {"model": "gpt-5"}
    assert body.parse() is first


def test_media_type_and_load_object() -> None:
    assert media_type("text/event-stream; charset=utf-8") == "text/event-stream"
    assert media_type(" Application/Json ") == "application/json"
    assert media_type(None) == ""
    assert load_object(json.dumps({"a": 1}).encode()) == {"a": 1}
    assert load_object("[1, 2]") is None
    assert load_object("{not json") is None
