"""The frame every provider's usage tap shares: decode the body, then read SSE events or hold JSON.

Why it exists: Anthropic and OpenAI answers differ in what their JSON says, not in how a body
reaches the meter. Each provider's tap subclasses ``BodyTap`` and supplies only the reading.

Contract of ``BodyTap(content_type, content_encoding, json_body, wanted=None)``:

- Content codings are undone chunk by chunk (``proxy.encoding``). An unsupported coding stops the
  tap before the first chunk; a corrupt body stops it at that chunk.
- ``text/event-stream``: every decoded event goes to the subclass's ``_on_event`` as it completes.
  ``wanted`` (optional) names the only named events worth decoding (``SSEDecoder``'s filter).
- ``application/json`` or no content type: the decoded bytes go to ``json_body``, a ``JsonBody``
  the subclass reads in ``result()``. A body that overflows its holder stops the tap.
- Any other media type is ignored: ``result()`` then has nothing to read.
- ``feed`` never raises: whatever goes wrong while decoding or reading stops the tap, and every
  stop (and any event a subclass cannot parse) is named in ``problems`` (``usage.Problem``
  values, each once). What ``result()`` makes of a stopped tap's held JSON is the subclass's
  choice (``_stopped`` tells it).
- ``finish()`` is called once the body has ended, however it ended: it flushes the content
  decoder and the SSE decoder, so a last event whose blank line never came (a stream cut right
  after its final ``message_delta``) is still read. Idempotent; never raises.
- ``result()`` returns a new ``ResponseFacts`` with ``metered`` set and the tap's ``problems``;
  it never raises (after a reading fault: no facts, and the problem ``unparseable``).

``JsonBody(limit, edge)`` holds a body whole up to ``limit`` bytes and parses it once per size
seen. Past the limit it keeps only the first and last ``edge`` bytes, for a reader that knows
where its API puts the facts; with ``edge`` 0 it keeps nothing and has ``overflowed``.

Also here: the JSON value helpers both taps use to read a payload without trusting its types,
and ``count``, the one reading of a usage number: absent or null is None; a negative, fractional
or absurd (> ``TOKEN_CAP``) value is made safe and its problem named (no provider
documents such values; an upstream that sends them must not crash pricing or poison a rollup).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Any

from proxy.encoding import BodyDecoder, DecodeError, make_decoder
from proxy.sse import SSEDecoder, SSEEvent
from proxy.usage import TOKEN_CAP, Problem, ResponseFacts

SSE_MEDIA_TYPE = "text/event-stream"
_JSON_MEDIA_TYPES = ("", "application/json")


def media_type(content_type: str | None) -> str:
    """``text/event-stream; charset=utf-8`` -> ``text/event-stream``; no header -> ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def load_object(data: str | bytes) -> dict[str, Any] | None:
    """A JSON object, or None when ``data`` is not JSON, not an object, or nested deeper than
    the parser goes (``RecursionError``: any upstream can send that)."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def as_str(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def as_object(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def count(value: object, problems: set[str], cap: int = TOKEN_CAP) -> int | None:
    """A usage number as an int in [0, ``cap``], or None when absent or null; what had to be
    changed about it is added to ``problems``. Plain ints in range, the usual case, cost one
    type check and two comparisons."""
    if type(value) is int:
        if 0 <= value <= cap:
            return value
        if value < 0:
            problems.add(Problem.USAGE_NEGATIVE)
            return 0
        problems.add(Problem.USAGE_OVER_CAP)
        return cap
    if value is None:
        return None
    return _odd_count(value, problems, cap)


def _odd_count(value: object, problems: set[str], cap: int) -> int | None:
    """A count that is not a JSON integer: ``12.0`` is 12; a fraction is truncated and flagged;
    anything else (a string, a bool, NaN) is flagged and ignored."""
    if isinstance(value, float) and math.isfinite(value):
        if not value.is_integer():
            problems.add(Problem.USAGE_NOT_INTEGER)
        return count(int(value), problems, cap)
    problems.add(Problem.USAGE_NOT_INTEGER)
    return None


class JsonBody:
    """A non-streamed body: whole up to ``limit`` bytes, else its edges or nothing."""

    __slots__ = ("_chunks", "_edge", "_head", "_limit", "_parsed", "_size", "_tail")

    def __init__(self, limit: int, edge: int = 0) -> None:
        self._limit = limit
        self._edge = edge  # head and tail bytes kept past the limit; 0 = keep nothing
        self._chunks: list[bytes] = []
        self._size = 0
        self._head = b""
        self._tail = b""
        self._parsed: tuple[int, dict[str, Any] | None] = (-1, None)

    @property
    def size(self) -> int:
        """Bytes of body seen so far."""
        return self._size

    @property
    def whole(self) -> bool:
        """Whether the body is held whole (it has not passed the limit)."""
        return self._size <= self._limit

    @property
    def overflowed(self) -> bool:
        """Whether the body passed the limit with nothing kept of it."""
        return self._size > self._limit and not self._edge

    def add(self, data: bytes) -> None:
        """Take the next decoded bytes of the body."""
        if not data or self.overflowed:
            return
        self._size += len(data)
        if self._size <= self._limit:
            self._chunks.append(data)
        elif self._edge:
            self._keep_edges(data)
        else:
            self._chunks = []

    def parse(self) -> dict[str, Any] | None:
        """The whole body as a JSON object; None past the limit, or if not (yet) a JSON object."""
        if not self.whole:
            return None
        if self._parsed[0] != self._size:
            body = b"".join(self._chunks)
            self._chunks = [body]
            self._parsed = (self._size, load_object(body))
        return self._parsed[1]

    def edges(self) -> tuple[str, str]:
        """Head and tail of a body past the limit, as text (both empty while it is whole)."""
        return self._head.decode(errors="replace"), self._tail.decode(errors="replace")

    def _keep_edges(self, data: bytes) -> None:
        if not self._head:  # just outgrew the limit: keep the edges only from now on
            data = b"".join((*self._chunks, data))
            self._chunks, self._head = [], data[: self._edge]
        self._tail = (self._tail + data)[-self._edge :]


class BodyTap(ABC):
    """Decodes one response as its raw chunks are forwarded and routes it to the reading."""

    __slots__ = ("_decoder", "_finished", "_json", "_problems", "_sse", "_stopped")

    def __init__(
        self,
        content_type: str | None,
        content_encoding: str | None,
        json_body: JsonBody,
        wanted: frozenset[str] | None = None,
    ) -> None:
        self._problems: set[str] = set()  # ``Problem`` values met so far
        self._stopped = False
        self._finished = False
        self._decoder: BodyDecoder | None = None
        try:
            self._decoder = make_decoder(content_encoding)
        except DecodeError:
            self._stop(Problem.UNDECODABLE_BODY)
        media = media_type(content_type)
        self._sse = SSEDecoder(wanted=wanted) if media == SSE_MEDIA_TYPE else None
        self._json = json_body if media in _JSON_MEDIA_TYPES else None

    def feed(self, chunk: bytes) -> None:
        """Take one raw upstream chunk. Never raises."""
        if self._stopped or not chunk:
            return
        try:
            data = self._decoder.decode(chunk) if self._decoder is not None else chunk
            self._take(data)
        except DecodeError:
            self._stop(Problem.UNDECODABLE_BODY)
        except Exception:  # a metering fault must never reach the forwarding of bytes
            self._stop(Problem.UNPARSEABLE)

    def finish(self) -> None:
        """The body ended: read what the decoders still hold. Idempotent; never raises."""
        if self._finished or self._stopped:
            self._finished = True
            return
        self._finished = True
        try:
            if self._decoder is not None:
                self._take(self._decoder.flush())
            if self._sse is not None:
                for event in self._sse.flush():
                    self._on_event(event)
        except DecodeError:  # a cut compressed body: what was decoded before still counts
            self._problems.add(Problem.UNDECODABLE_BODY)
        except Exception:
            self._problems.add(Problem.UNPARSEABLE)

    @property
    def problems(self) -> tuple[str, ...]:
        """The ``Problem`` values met so far, sorted, each once."""
        if self._sse is not None and self._sse.dropped_events:
            self._problems.add(Problem.OVERSIZED_EVENT)
        return tuple(sorted(self._problems))

    def result(self) -> ResponseFacts:
        """What the response said so far, as a new object (safe to keep while feeding goes on).
        Never raises: the forwarder builds the exchange's one event from it."""
        try:
            facts = self._read()
        except Exception:  # a reading fault must not cost the exchange its event
            self._problems.add(Problem.UNPARSEABLE)
            facts = ResponseFacts()
        facts.metered = True
        facts.problems = self.problems
        return facts

    def _take(self, data: bytes) -> None:
        """Decoded bytes of the body, to the SSE reader or the JSON holder."""
        if self._sse is not None:
            for event in self._sse.feed(data):
                self._on_event(event)
        elif self._json is not None:
            self._json.add(data)
            if self._json.overflowed:
                self._stop(Problem.OVERSIZED_BODY)

    @abstractmethod
    def _read(self) -> ResponseFacts:
        """The facts read so far, as a new object (``result()`` adds metered and problems)."""

    @abstractmethod
    def _on_event(self, event: SSEEvent) -> None:
        """Read one SSE event of the body."""

    def _stop(self, problem: Problem) -> None:
        self._stopped = True
        self._problems.add(problem)
