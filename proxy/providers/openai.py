"""OpenAI's API and compatible servers: metered paths, usage tap, include_usage, error JSON.

``provider(upstream)`` bundles them into the ``Provider`` the forwarder is built with. OpenAI
traffic is selected by the path prefix ``/openai``: an agent uses
``base_url="http://tokenmeter:8080/openai/v1"`` and ``/openai/v1/...`` goes to
``upstream + /v1/...``.

Metered (``is_metered``): ``POST`` to ``/v1/chat/completions``, ``/v1/responses``,
``/v1/responses/compact``, ``/v1/completions`` and ``/v1/embeddings``. Every other path passes
through and is recorded with zero tokens.

Counting rules (shared/api-facts.md §5): OpenAI's ``prompt_tokens`` / ``input_tokens`` INCLUDE
``cached_tokens`` and ``cache_write_tokens``, so ``cache_read`` = cached, ``cache_write_5m`` =
cache writes (the kind the pricer bills at the catalog's cache-write rate), ``input`` = prompt -
cached - cache writes (never below 0), ``output`` = ``completion_tokens`` / ``output_tokens``.
Reasoning tokens are part of output; ``reasoning`` records them for observability only.

Tap contract (one ``OpenAITap`` per exchange, as ``AnthropicTap``): ``feed`` never raises;
``result()`` at any time returns what was seen so far. JSON bodies up to ``FULL_PARSE_BYTES`` are
parsed once at ``result()``; a larger one (an embeddings batch can be tens of MB) keeps only its
head and tail, where OpenAI puts ``model``, ``id`` and ``usage``, and only those are read. SSE:
Chat / legacy completions streams are data-only and end with ``data: [DONE]``; only the first
chunk (model, id) and chunks that carry a usage object, a finish reason or an error are parsed.
Responses streams name their events; only ``response.created``, ``response.completed``,
``response.incomplete``, ``response.failed`` and ``error`` are parsed. A chat stream carries
usage only in its last chunk, so a stream cut before it records the model and no tokens.

include_usage: a streamed Chat Completion reports usage only if the client asked with
``stream_options.include_usage``. When it did not, ``prepare`` asks for it (the request body gets
one member spliced in; it is re-serialised only when ``stream_options`` exists without it) and
``UsageChunkFilter`` takes back out what that option adds: the last, usage-only chunk
(``"choices":[]``) and the ``"usage":null`` member of every other chunk. The client's stream is
then byte for byte what upstream would have sent without the option. The filter holds a partial
event until its blank line arrives, so it adds no delay when upstream sends whole events.

Compressed streams: the OpenAI SDK (httpx) accepts gzip/deflate/br/zstd, and some
OpenAI-compatible servers compress SSE. Then the filter decodes, removes the same bytes and
re-encodes with the same coding, flushing after every chunk (so the stream is not held back).
The client receives the same ``Content-Encoding`` and the same decoded stream it would have
received; the compressed bytes themselves differ, as they may between any two compressors. A
coding this module cannot re-encode gets no filter: that client sees the usage chunk too.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import brotli  # type: ignore[import-untyped]  # brotli ships no type information
import zstandard

from proxy.encoding import BodyDecoder, DecodeError, codings, make_decoder
from proxy.providers import ChunkFilter, Provider
from proxy.sse import SSEDecoder, SSEEvent
from proxy.usage import ResponseFacts, Usage

OPENAI = "openai"
PREFIX = "/openai"
FULL_PARSE_BYTES = 1024 * 1024
EDGE_BYTES = 64 * 1024  # head and tail kept of a larger JSON body
USAGE_ADDED = "include_usage added by tokenmeter"  # the note ``prepare`` hands ``make_filter``

_METERED_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/responses/compact",
        "/v1/completions",
        "/v1/embeddings",
    }
)
_STREAMED_CHAT_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
_RESPONSE_EVENTS = frozenset(
    {"response.created", "response.completed", "response.incomplete", "response.failed"}
)
_FINAL_RESPONSE_EVENTS = _RESPONSE_EVENTS - {"response.created"}
_WORTH_PARSING = re.compile(
    r'"usage"\s*:\s*\{|"finish_reason"\s*:\s*"|"error"\s*:\s*\{'
    r'|"type"\s*:\s*"(?:error|response\.(?:created|completed|incomplete|failed))"'
)
_MODEL = re.compile(r'"model"\s*:\s*"([^"\\]*)"')
_ID = re.compile(r'"id"\s*:\s*"([^"\\]*)"')
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_ERROR_CODES = {  # the forwarder's own error kinds, in OpenAI's vocabulary
    "api_error": "upstream_unreachable",
    "timeout_error": "upstream_timeout",
    "overloaded_error": "proxy_overloaded",
}


def is_metered(method: str, path: str) -> bool:
    """Whether this request's answer carries usage (``path`` without ``/openai`` or query)."""
    return method == "POST" and path in _METERED_PATHS


def provider(upstream: str) -> Provider:
    """OpenAI under the ``/openai`` path prefix, served from ``upstream``."""
    return Provider(
        name=OPENAI,
        upstream=upstream,
        prefix=PREFIX,
        is_metered=is_metered,
        make_tap=OpenAITap,
        error_body=error_body,
        prepare=prepare,
        make_filter=make_filter,
    )


def error_body(status: int, error_type: str, message: str) -> bytes:
    """OpenAI's error JSON, for answers the proxy makes itself (502, 503, 504, 429)."""
    if status >= 500:
        kind = "server_error"
    elif status == 429:
        kind = "requests"
    else:
        kind = "invalid_request_error"
    code = _ERROR_CODES.get(error_type, error_type or None)
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


# --- usage ------------------------------------------------------------------------------------


def _int(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def usage_from(usage: dict[str, Any]) -> Usage:
    """Chat/completions/embeddings ``usage`` or Responses ``usage`` in tokenmeter's kinds."""
    if "input_tokens" in usage:  # Responses API
        prompt, output = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        details = _obj(usage.get("input_tokens_details"))
        out_details = _obj(usage.get("output_tokens_details"))
    else:  # Chat Completions, legacy completions, embeddings
        prompt, output = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        details = _obj(usage.get("prompt_tokens_details"))
        out_details = _obj(usage.get("completion_tokens_details"))
    cached = _int(details.get("cached_tokens"))
    written = _int(details.get("cache_write_tokens"))
    return Usage(
        input=max(prompt - cached - written, 0),
        cache_write_5m=written,
        cache_read=cached,
        output=output,
        reasoning=_int(out_details.get("reasoning_tokens")),
    )


# --- the tap ----------------------------------------------------------------------------------


class _JsonBody:
    """A non-streamed body: whole up to ``FULL_PARSE_BYTES``, else only its head and tail."""

    __slots__ = ("_chunks", "_head", "_size", "_tail")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._head = b""
        self._tail = b""

    def add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size <= FULL_PARSE_BYTES:
            self._chunks.append(data)
            return
        if not self._head:  # just outgrew the full parse: keep the edges only from now on
            data = b"".join((*self._chunks, data))
            self._chunks, self._head = [], data[:EDGE_BYTES]
        self._tail = (self._tail + data)[-EDGE_BYTES:]

    def payload(self) -> dict[str, Any] | None:
        """The body as an object: parsed whole, or rebuilt from the edges of a large one."""
        if self._size <= FULL_PARSE_BYTES:
            return _load_object(b"".join(self._chunks))
        return _from_edges(self._head.decode(errors="replace"), self._tail.decode(errors="replace"))


def _from_edges(head: str, tail: str) -> dict[str, Any]:
    """``model``, ``id`` and ``usage`` of a large body: OpenAI puts them first or last."""
    payload: dict[str, Any] = {}
    starts = [m.end() for m in re.finditer(r'"usage"\s*:\s*', tail)]
    if starts:
        with contextlib.suppress(ValueError):  # cut short by the tail's start or end
            payload["usage"] = json.JSONDecoder().raw_decode(tail, starts[-1])[0]
    models = _MODEL.findall(tail)[-1:] or _MODEL.findall(head)[:1]  # embeddings last, chat first
    ids = _ID.findall(head)[:1]
    if models:
        payload["model"] = models[0]
    if ids:
        payload["id"] = ids[0]
    return payload


class OpenAITap:
    """Reads usage from one OpenAI response as its raw chunks are forwarded."""

    __slots__ = ("_decoder", "_events", "_facts", "_json", "_sse", "_stopped", "problems")

    def __init__(self, content_type: str | None, content_encoding: str | None) -> None:
        self.problems = 0  # undecodable body, unparseable event: each counts
        self._facts = ResponseFacts()
        self._stopped = False
        self._events = 0
        self._decoder: BodyDecoder | None = None
        try:
            self._decoder = make_decoder(content_encoding)
        except DecodeError:
            self._stop()
        media = (content_type or "").split(";", 1)[0].strip().lower()
        self._sse = SSEDecoder() if media == "text/event-stream" else None
        self._json = _JsonBody() if media in ("", "application/json") else None

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
        except Exception:  # a metering fault must never reach the forwarding of bytes
            self._stop()

    def result(self) -> ResponseFacts:
        """What the response said so far, as a new object (safe to keep while feeding goes on)."""
        if self._json is None:
            return replace(self._facts, usage=replace(self._facts.usage))
        facts = ResponseFacts()
        payload = None if self._stopped else self._json.payload()
        if payload is not None:
            _read_body(facts, payload)
            facts.complete = True
        return facts

    def _stop(self) -> None:
        self._stopped = True
        self.problems += 1

    def _on_event(self, event: SSEEvent) -> None:
        self._events += 1
        name, data = event.event, event.data
        if name is None and data.startswith("[DONE]"):
            self._facts.complete = True
            return
        wanted = name in _RESPONSE_EVENTS or name == "error"
        if name is None:
            wanted = self._events == 1 or _worth_parsing(data)
        if not wanted:
            return  # content deltas, and event types added in the future
        payload = _load_object(data)
        if payload is None:
            self.problems += 1
            self._facts.error_type = "unknown" if name == "error" else self._facts.error_type
            return
        _read_event(self._facts, payload)


def _worth_parsing(data: str) -> bool:
    """Whether a nameless event may carry usage, a finish reason or an error.

    Literal checks first: nearly every chat chunk is a content delta with ``"usage":null`` and
    ``"finish_reason":null``, and those must cost no regex.
    """
    if '"usage"' in data and '"usage":null' not in data:
        return True
    if '"finish_reason"' in data and '"finish_reason":null' not in data:
        return True
    if '"error"' not in data and '"type"' not in data:
        return False
    return _WORTH_PARSING.search(data) is not None


def _read_event(facts: ResponseFacts, payload: dict[str, Any]) -> None:
    """One parsed SSE event: a chat chunk, a Responses event or an error."""
    kind = _str(payload.get("type")) or ""
    if kind in _RESPONSE_EVENTS:
        _read_object(facts, _obj(payload.get("response")))
        facts.complete = facts.complete or kind in _FINAL_RESPONSE_EVENTS
    elif kind == "error":
        error = _obj(payload.get("error")) or payload
        facts.error_type = _str(error.get("code")) or _str(error.get("type")) or "unknown"
    else:
        _read_body(facts, payload)


def _read_body(facts: ResponseFacts, payload: dict[str, Any]) -> None:
    """A whole JSON answer or one chat chunk: an error, or an object with usage."""
    error = payload.get("error")
    if isinstance(error, dict) and "object" not in payload:  # an error alone, not a response
        facts.error_type = _str(error.get("type")) or _str(error.get("code")) or "unknown"
        return
    _read_object(facts, payload)


def _read_object(facts: ResponseFacts, obj: dict[str, Any]) -> None:
    """A chat completion (chunk), completion, embeddings list or Responses ``response``."""
    facts.model = _str(obj.get("model")) or facts.model
    facts.message_id = _str(obj.get("id")) or facts.message_id
    facts.service_tier = _str(obj.get("service_tier")) or facts.service_tier
    facts.stop_reason = _stop_reason(obj) or facts.stop_reason
    usage = obj.get("usage")
    if isinstance(usage, dict):
        facts.usage = usage_from(usage)
        facts.saw_usage = True
    failure = obj.get("error")
    if obj.get("status") == "failed" and isinstance(failure, dict):
        facts.error_type = _str(failure.get("code")) or "unknown"


def _stop_reason(obj: dict[str, Any]) -> str | None:
    choices = obj.get("choices")
    if isinstance(choices, list) and choices:
        return _str(_obj(choices[0]).get("finish_reason"))
    reason = _str(_obj(obj.get("incomplete_details")).get("reason"))
    return reason or _str(obj.get("status"))


def _load_object(data: str | bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- include_usage: asking for it, and taking it back out ---------------------------------------


def prepare(method: str, path: str, body: bytes) -> tuple[bytes, Any]:
    """Ask for usage on a streamed chat/completion the client did not ask it for.

    Returns the body to send and ``USAGE_ADDED`` when it was changed, else the body untouched
    and None. Cheap on the common path: a regex on the bytes before any parsing.
    """
    if method != "POST" or path not in _STREAMED_CHAT_PATHS or not _STREAM_TRUE.search(body):
        return body, None
    request = _load_object(body)
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
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if note != USAGE_ADDED or media != "text/event-stream":
        return None
    if not codings(content_encoding):
        return UsageChunkFilter()
    try:
        return UsageChunkFilter(_Recoder(content_encoding))
    except DecodeError:
        return None


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
            return self._codec.encode(self._events(self._codec.decode(chunk)))
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
        tail = self._events(self._codec.decode_end())
        return self._codec.encode(tail + self._last_event(self._pending)) + self._codec.finish()

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


class _Encoder(Protocol):
    def encode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _ZlibEncoder:
    def __init__(self, wbits: int) -> None:
        self._z = zlib.compressobj(wbits=wbits)

    def encode(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush()


class _BrotliEncoder:
    def __init__(self) -> None:
        self._c = brotli.Compressor()

    def encode(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data) + self._c.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._c.finish()
        return out


class _ZstdEncoder:
    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor().compressobj()

    def encode(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


_ENCODERS: dict[str, Callable[[], _Encoder]] = {
    "gzip": lambda: _ZlibEncoder(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: _ZlibEncoder(zlib.MAX_WBITS | 16),
    "deflate": lambda: _ZlibEncoder(zlib.MAX_WBITS),
    "br": _BrotliEncoder,
    "zstd": _ZstdEncoder,
}


class _Recoder:
    """Undoes a response's content codings and applies them again, flushing every chunk."""

    __slots__ = ("_decoder", "_encoders")

    def __init__(self, content_encoding: str | None) -> None:
        names = codings(content_encoding)
        if any(name not in _ENCODERS for name in names):
            raise DecodeError(f"cannot re-encode {content_encoding!r}")
        decoder = make_decoder(content_encoding)
        if decoder is None:
            raise DecodeError("nothing to re-encode")
        self._decoder: BodyDecoder = decoder
        self._encoders: list[_Encoder] = [
            _ENCODERS[name]() for name in names
        ]  # in the order they were applied

    def decode(self, chunk: bytes) -> bytes:
        return self._decoder.decode(chunk)

    def decode_end(self) -> bytes:
        return self._decoder.flush()

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        for encoder in self._encoders:
            data = encoder.encode(data)
        return data

    def finish(self) -> bytes:
        out = b""
        for encoder in self._encoders:
            out = (encoder.encode(out) if out else b"") + encoder.finish()
        return out
