"""OpenAI's include_usage: asking upstream for usage, and taking it back out of the stream.

Why it exists: a streamed Chat Completion reports usage only if the client asked with
``stream_options.include_usage``. ``openai.provider`` wires ``prepare`` and ``make_filter`` in, so
every streamed chat is metered while its client sees what it asked for.

Contract:

- ``prepare(method, path, body)``: when the client did not ask for usage, the request body gets
  one member spliced in (it is re-serialised only when ``stream_options`` exists without it) and
  the note ``USAGE_ADDED`` comes back; every other request is returned byte for byte, with None.
- ``make_filter(note, content_type, content_encoding)``: for an SSE answer to such a request, a
  ``UsageChunkFilter`` that takes back out what that option adds: the last, usage-only chunk
  (``"choices":[]``) and the ``"usage":null`` member of every other chunk. The client's stream is
  then byte for byte what upstream would have sent without the option. The filter holds a partial
  event until its blank line arrives, so it adds no delay when upstream sends whole events. It
  never raises: after a fault the rest of the stream passes through as it comes.
- Compressed streams: the OpenAI SDK (httpx) accepts gzip/deflate/br/zstd, and some
  OpenAI-compatible servers compress SSE. Then the filter decodes, removes the same bytes and
  re-encodes with the same coding (``proxy.encoding``), flushing after every chunk (so the stream
  is not held back). The client receives the same ``Content-Encoding`` and the same decoded
  stream it would have received; the compressed bytes themselves differ, as they may between any
  two compressors. A coding that cannot be re-encoded gets no filter: that client sees the usage
  chunk too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from proxy.encoding import (
    BodyDecoder,
    BodyEncoder,
    DecodeError,
    EncodeError,
    make_decoder,
    make_encoder,
)
from proxy.providers import ChunkFilter
from proxy.providers.body import SSE_MEDIA_TYPE, load_object, media_type

USAGE_ADDED = "include_usage added by tokenmeter"  # the note ``prepare`` hands ``make_filter``

_STREAMED_CHAT_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')


def prepare(method: str, path: str, body: bytes) -> tuple[bytes, Any]:
    """Ask for usage on a streamed chat/completion the client did not ask it for.

    Returns the body to send and ``USAGE_ADDED`` when it was changed, else the body untouched
    and None. Cheap on the common path: a regex on the bytes before any parsing.
    """
    if method != "POST" or path not in _STREAMED_CHAT_PATHS or not _STREAM_TRUE.search(body):
        return body, None
    request = load_object(body)
    if request is None or request.get("stream") is not True:
        return body, None
    if "stream_options" not in request:
        return _splice(body), USAGE_ADDED
    options = request["stream_options"]
    if options is not None and not isinstance(options, dict):
        return body, None  # upstream will refuse it as the client sent it
    if options is not None and options.get("include_usage") is True:
        return body, None
    request["stream_options"] = {**(options or {}), "include_usage": True}
    return _dumps(request), USAGE_ADDED


def _splice(body: bytes) -> bytes:
    """The client's bytes with ``stream_options`` as the first member of the object."""
    start = body.index(b"{") + 1  # the body parsed as an object, so this is its opening brace
    return body[:start] + b'"stream_options":{"include_usage":true},' + body[start:]


def _dumps(request: dict[str, Any]) -> bytes:
    try:
        return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate escape in the client's JSON
        return json.dumps(request, separators=(",", ":")).encode()


def make_filter(
    note: Any, content_type: str | None, content_encoding: str | None
) -> ChunkFilter | None:
    """The filter for a stream whose request ``prepare`` changed, or None."""
    if note != USAGE_ADDED or media_type(content_type) != SSE_MEDIA_TYPE:
        return None
    try:
        decoder, encoder = make_decoder(content_encoding), make_encoder(content_encoding)
    except (DecodeError, EncodeError):
        return None  # a coding this module cannot apply again: the stream goes as upstream sent it
    if decoder is None or encoder is None:
        return UsageChunkFilter()
    return UsageChunkFilter(_Recoder(decoder, encoder))


_BOUNDARY = re.compile(rb"(?>\r\n|\n|\r)(?>\r\n|\n|\r)")  # the blank line that ends an event
_USAGE_CHUNK = re.compile(rb'"usage"\s*:\s*\{')
_NO_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_NULL_LAST = re.compile(rb'\s*,\s*"usage"\s*:\s*null(?=\s*\}\s*\Z)')
_NULL_OTHER = re.compile(rb'"usage"\s*:\s*null\s*,\s*')


def strip_added_usage(event: bytes) -> bytes | None:
    """One SSE event (without its blank line) as it would be without include_usage; None = drop."""
    at = event.find(b',"usage":null')  # OpenAI's own layout: no regex for the common case
    if at >= 0 and event[at + 13 : at + 14] in (b",", b"}"):
        return event[:at] + event[at + 13 :]
    if b'"usage"' not in event:
        return event
    if _USAGE_CHUNK.search(event) and _NO_CHOICES.search(event):
        return None
    stripped, found = _NULL_LAST.subn(b"", event, count=1)
    if found:
        return stripped
    return _NULL_OTHER.sub(b"", event, count=1)


@dataclass(frozen=True, slots=True)
class _Recoder:
    """A response's content codings: undone before the filtering, applied again after it."""

    decoder: BodyDecoder
    encoder: BodyEncoder


class UsageChunkFilter:
    """Removes what ``prepare``'s include_usage added from a chat stream; never raises."""

    __slots__ = ("_broken", "_codec", "_pending")

    def __init__(self, codec: _Recoder | None = None) -> None:
        self._codec = codec
        self._pending = b""
        self._broken = False  # after a fault the rest of the stream passes as it comes

    def filter(self, chunk: bytes) -> bytes:
        if self._broken:
            return chunk
        try:
            if self._codec is None:
                return self._events(chunk)
            decoded = self._codec.decoder.decode(chunk)
            return self._codec.encoder.encode(self._events(decoded))
        except Exception:  # a corrupt body: pass the rest through rather than break the stream
            self._broken = True
            held, self._pending = self._pending, b""
            return chunk if self._codec is not None else held + chunk

    def flush(self) -> bytes:
        if self._broken:
            return b""
        try:
            return self._end()
        except Exception:
            self._broken = True
            return b""

    def _end(self) -> bytes:
        if self._codec is None:
            return self._last_event(self._pending)
        tail = self._events(self._codec.decoder.flush()) + self._last_event(self._pending)
        return self._codec.encoder.encode(tail) + self._codec.encoder.finish()

    def _last_event(self, pending: bytes) -> bytes:
        self._pending = b""
        return (strip_added_usage(pending) or b"") if pending else b""

    def _events(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        if b"\r" not in buffer:  # LF-only, as OpenAI sends it: a plain split, no regex
            events = buffer.split(b"\n\n")
            self._pending = events.pop()
            kept = (strip_added_usage(event) for event in events)
            return b"".join(event + b"\n\n" for event in kept if event is not None)
        out: list[bytes] = []
        start = 0
        for boundary in _BOUNDARY.finditer(buffer):
            event = strip_added_usage(buffer[start : boundary.start()])
            if event is not None:
                out.append(event)
                out.append(boundary.group())
            start = boundary.end()
        self._pending = buffer[start:]
        return b"".join(out)
