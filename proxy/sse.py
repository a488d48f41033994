"""Incremental Server-Sent Events decoder: bytes in, events out, no I/O.

Why it exists: the proxy forwards a streamed answer to the client byte for byte and, on the side,
reads the events that carry usage. The network splits that stream wherever it likes, so the
decoder has to accept any split and still yield exactly the events of the whole stream.

Contract (WHATWG "event stream interpretation", with the differences named here):

- ``feed(chunk)`` accepts the stream cut at any byte: inside a line, inside a multi-byte UTF-8
  character, between the ``\\r`` and ``\\n`` of a CRLF. Lines end with CRLF, LF or CR.
- ``data:`` lines of one event are joined with ``\\n``; one space after the colon is dropped;
  comment lines (``: ping``), ``id``, ``retry`` and unknown fields are ignored; a leading byte
  order mark is skipped; invalid UTF-8 becomes U+FFFD.
- ``SSEEvent.event`` is ``None`` when the event named no type (the spec's "message").
- Bounded memory: an event whose ``data`` (plus its unfinished line) passes ``max_event_bytes`` is
  dropped whole and counted in ``dropped_events``; what follows it decodes normally.
- Cost per chunk is proportional to the chunk: only the new bytes are searched for line ends, and
  an unfinished line is kept as pieces that are joined once, when its end arrives.
- ``wanted`` (optional): named events outside it are skipped, their data never decoded; an
  event that names itself after its first ``data:`` line is still delivered whole.
- ``flush()`` ends the stream. Unlike a browser it also dispatches a last event whose blank line
  never came: for metering, a final ``message_delta`` still counts.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its ``event:`` name (or ``None``) and its joined ``data:`` lines."""

    event: str | None
    data: str


class SSEDecoder:
    """Turns an SSE byte stream, fed in arbitrary chunks, into ``SSEEvent`` values."""

    __slots__ = (
        "_after_cr",
        "_data",
        "_dropping",
        "_event",
        "_partial",
        "_partial_len",
        "_size",
        "_skipping",
        "_started",
        "_wanted",
        "dropped_events",
        "max_event_bytes",
    )

    def __init__(
        self,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        wanted: frozenset[str] | None = None,
    ) -> None:
        self.max_event_bytes = max_event_bytes
        # Named events outside ``wanted`` are skipped without decoding their data (a stream is
        # mostly content_block_delta events, and a meter reads none of them).
        self._wanted = None if wanted is None else frozenset(w.encode() for w in wanted)
        self._skipping = False
        self.dropped_events = 0  # events discarded for passing max_event_bytes
        self._partial: list[bytes] = []  # pieces of the line whose end has not arrived
        self._partial_len = 0  # its length, still counted while its pieces are dropped
        self._after_cr = False  # the last chunk ended in CR, so a leading LF belongs to it
        self._started = False  # the first line (which may carry a BOM) is done
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0  # data bytes held for the current event
        self._dropping = False  # skipping the rest of an oversized event

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk; return the events it completed, in order."""
        if not chunk:
            return []  # also keeps a pending CR waiting for its LF
        lines = self._normalize(chunk).split(b"\n")
        tail = lines.pop()
        events: list[SSEEvent] = []
        if lines:
            first = self._join_partial(lines[0])
            if first is None:
                del lines[0]
            else:
                lines[0] = first
            for line in lines:
                event = self._line(line)
                if event is not None:
                    events.append(event)
        self._hold(tail)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: finish an unterminated last line and dispatch a pending event."""
        events = self.feed(b"\n") if self._partial_len else []
        last = self._dispatch()
        if last is not None:
            events.append(last)
        self._after_cr = False
        return events

    def _normalize(self, chunk: bytes) -> bytes:
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._after_cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return chunk

    def _join_partial(self, end: bytes) -> bytes | None:
        """The whole first line of a chunk, or None if it ends a line that was dropped."""
        dropped = self._dropping and self._partial_len > 0
        line = b"".join((*self._partial, end)) if self._partial else end
        self._partial = []
        self._partial_len = 0
        if not self._started:
            self._started = True
            line = line.removeprefix(_BOM)
        return None if dropped else line

    def _hold(self, tail: bytes) -> None:
        if not tail:
            return
        self._partial_len += len(tail)
        if self._dropping:
            return
        if self._size + self._partial_len > self.max_event_bytes:
            self._drop()
            return
        self._partial.append(tail)

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if self._skipping or self._dropping or line[0] == 0x3A:  # 0x3A ":" starts a comment
            return None
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._add_data(value)
        elif name == b"event":
            if self._wanted is not None and value not in self._wanted and not self._data:
                self._skipping = True  # (data before the name: the event is kept whole)
                return None
            self._event = value.decode("utf-8", "replace")
        return None

    def _add_data(self, value: bytes) -> None:
        self._size += len(value)
        if self._size > self.max_event_bytes:
            self._drop()
            return
        self._data.append(value.decode("utf-8", "replace"))

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data and not self._dropping:
            event = SSEEvent(self._event, "\n".join(self._data))
        self._event = None
        self._data = []
        self._size = 0
        self._dropping = False
        self._skipping = False
        return event

    def _drop(self) -> None:
        self.dropped_events += 1
        self._dropping = True
        self._partial = []
        self._data = []
        self._event = None
