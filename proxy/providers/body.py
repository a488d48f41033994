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
  stop (and any event a subclass cannot parse) is counted in ``problems``. What ``result()``
  makes of a stopped tap's held JSON is the subclass's choice (``_stopped`` tells it).

``JsonBody(limit, edge)`` holds a body whole up to ``limit`` bytes and parses it once per size
seen. Past the limit it keeps only the first and last ``edge`` bytes, for a reader that knows
where its API puts the facts; with ``edge`` 0 it keeps nothing and has ``overflowed``.

Also here: the JSON value helpers both taps use to read a payload without trusting its types.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from proxy.encoding import BodyDecoder, DecodeError, make_decoder
from proxy.sse import SSEDecoder, SSEEvent
from proxy.usage import ResponseFacts

SSE_MEDIA_TYPE = "text/event-stream"
_JSON_MEDIA_TYPES = ("", "application/json")


def media_type(content_type: str | None) -> str:
    """``text/event-stream; charset=utf-8`` -> ``text/event-stream``; no header -> ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def load_object(data: str | bytes) -> dict[str, Any] | None:
    """A JSON object, or None when ``data`` is not JSON or not an object."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_str(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def as_object(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


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

    __slots__ = ("_decoder", "_json", "_sse", "_stopped", "problems")

    def __init__(
        self,
        content_type: str | None,
        content_encoding: str | None,
        json_body: JsonBody,
        wanted: frozenset[str] | None = None,
    ) -> None:
        self.problems = 0  # undecodable body, unparseable event, oversized body: each counts
        self._stopped = False
        self._decoder: BodyDecoder | None = None
        try:
            self._decoder = make_decoder(content_encoding)
        except DecodeError:
            self._stop()
        media = media_type(content_type)
        self._sse = SSEDecoder(wanted=wanted) if media == SSE_MEDIA_TYPE else None
        self._json = json_body if media in _JSON_MEDIA_TYPES else None

    def feed(self, chunk: bytes) -> None:
        """Take one raw upstream chunk. Never raises."""
        if self._stopped or not chunk:
            return
        try:
            data = self._decoder.decode(chunk) if self._decoder is not None else chunk
            if self._sse is not None:
                for event in self._sse.feed(data):
                    self._on_event(event)
            elif self._json is not None:
                self._json.add(data)
                if self._json.overflowed:
                    self._stop()
        except Exception:  # a metering fault must never reach the forwarding of bytes
            self._stop()

    @abstractmethod
    def result(self) -> ResponseFacts:
        """What the response said so far, as a new object (safe to keep while feeding goes on)."""

    @abstractmethod
    def _on_event(self, event: SSEEvent) -> None:
        """Read one SSE event of the body."""

    def _stop(self) -> None:
        self._stopped = True
        self.problems += 1
