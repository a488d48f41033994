"""Incremental undoing (and redoing) of HTTP content codings, for bodies that stream past.

Why it exists: Claude Code sends ``Accept-Encoding: gzip, deflate, br, zstd``, so an answer may
arrive compressed. The proxy forwards the compressed bytes untouched; the usage tap needs the
decoded JSON or SSE, chunk by chunk, without holding the body. A filter that changes a streamed
body (OpenAI's include_usage) decodes it, and encodes what it keeps again with the same codings.

Decoding contract:

- ``make_decoder(content_encoding)`` returns ``None`` when there is nothing to undo (no header,
  ``identity``), else a ``BodyDecoder``. Codings are undone in the reverse of the order the header
  lists them (``gzip, br`` = br first, then gzip). Names are case-insensitive; ``x-gzip`` is gzip.
- ``decode(chunk)`` returns the decoded bytes that chunk made available (possibly ``b""``);
  ``flush()`` returns whatever is left at the end of the body.
- ``deflate`` accepts both the zlib-wrapped form the RFC names and the raw form some servers send;
  concatenated gzip members and zstd frames decode as one body.
- No size limit here: one chunk may expand many times over, so a caller that holds decoded bytes
  caps what it keeps.

Encoding contract:

- ``make_encoder(content_encoding)`` returns ``None`` when there is nothing to apply, else a
  ``BodyEncoder`` that applies the codings in the order the header lists them.
- ``encode(data)`` returns ``data`` encoded and flushed, so everything encoded so far decodes
  from the output at once (a stream is never held back); ``encode(b"")`` returns ``b""``.
  ``finish()`` returns the end of the encoded body.

Failures form one small tree, so a caller catches exactly one type per direction::

    ValueError
     ├── DecodeError            corrupt data, or a coding this module cannot undo
     └── EncodeError            a coding this module cannot apply, or a compressor failure

Nothing else escapes ``make_decoder``, ``decode``, ``flush``, ``make_encoder``, ``encode`` or
``finish``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection
from typing import ClassVar, Protocol

import brotli  # ships no type information: ignore_missing_imports in pyproject.toml
import zstandard


class DecodeError(ValueError):
    """A body could not be decoded: corrupt data, or an unsupported content coding."""


class EncodeError(ValueError):
    """A body could not be encoded: an unsupported content coding, or a compressor failure."""


class BodyDecoder(Protocol):
    """Undoes content codings incrementally."""

    def decode(self, chunk: bytes) -> bytes:
        """Decoded bytes made available by ``chunk``."""
        ...

    def flush(self) -> bytes:
        """Decoded bytes still held at the end of the body."""
        ...


class _Gzip:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)

    def decode(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        while chunk:
            out.append(self._z.decompress(chunk))
            if not self._z.eof:
                break
            chunk = self._z.unused_data  # the start of a following gzip member, if any
            self._z = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        return b"".join(out)

    def flush(self) -> bytes:
        return self._z.flush()


def _is_zlib_header(head: bytes) -> bool:
    """RFC 1950: compression method 8 and a header checksum that divides by 31."""
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


class _Deflate:
    """``deflate`` as the RFC says (zlib wrapper) or as some servers send it (raw)."""

    def __init__(self) -> None:
        self._head = b""  # bytes held until two are there to tell the two forms apart
        self._z: zlib._Decompress | None = None

    def decode(self, chunk: bytes) -> bytes:
        if self._z is None:
            self._head += chunk
            if len(self._head) < 2:
                return b""
            chunk, self._head = self._head, b""
            wbits = zlib.MAX_WBITS if _is_zlib_header(chunk) else -zlib.MAX_WBITS
            self._z = zlib.decompressobj(wbits=wbits)
        return self._z.decompress(chunk)

    def flush(self) -> bytes:
        if self._z is None:
            return zlib.decompressobj(wbits=-zlib.MAX_WBITS).decompress(self._head)
        return self._z.flush()


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def decode(self, chunk: bytes) -> bytes:
        out: bytes = self._d.process(chunk)
        return out

    def flush(self) -> bytes:
        return b""  # process() hands out everything it can; a cut stream has no more to give


class _Zstd:
    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decode(self, chunk: bytes) -> bytes:
        return self._d.decompress(chunk)

    def flush(self) -> bytes:
        return b""  # decompress() hands out everything it can


_DECODERS: dict[str, type[_Gzip | _Deflate | _Brotli | _Zstd]] = {
    "gzip": _Gzip,
    "x-gzip": _Gzip,
    "deflate": _Deflate,
    "br": _Brotli,
    "zstd": _Zstd,
}


class _Chain:
    """Stages applied one after another; every library failure is raised as ``error``."""

    __slots__ = ("_ends", "_steps")
    error: ClassVar[type[ValueError]]
    fault: ClassVar[str]

    def __init__(self, steps: list[Callable[[bytes], bytes]], ends: list[Callable[[], bytes]]):
        self._steps = steps
        self._ends = ends

    def push(self, data: bytes) -> bytes:
        """``data`` through every stage; nothing in gives nothing out (a flush would still emit)."""
        try:
            for step in self._steps:
                if not data:
                    return b""
                data = step(data)
        except Exception as exc:  # zlib.error, brotli.error, zstandard.ZstdError, ...
            raise self.error(f"{self.fault}: {exc}") from exc
        return data

    def end(self) -> bytes:
        """What each stage still holds, passed through the stages after it."""
        out = b""
        try:
            for step, end in zip(self._steps, self._ends, strict=True):
                out = (step(out) if out else b"") + end()
        except Exception as exc:
            raise self.error(f"{self.fault}: {exc}") from exc
        return out


class _DecoderChain(_Chain):
    error = DecodeError
    fault = "corrupt compressed body"
    decode = _Chain.push
    flush = _Chain.end


def codings(content_encoding: str | None) -> list[str]:
    """The codings of a Content-Encoding header in the order they were applied."""
    names = (name.strip().lower() for name in (content_encoding or "").split(","))
    return [name for name in names if name and name != "identity"]


def _supported(
    content_encoding: str | None, known: Collection[str], error: type[ValueError]
) -> list[str]:
    """The header's codings in the order they were applied; ``error`` if one is not ``known``."""
    names = codings(content_encoding)
    unsupported = [name for name in names if name not in known]
    if unsupported:
        raise error(f"unsupported content coding: {', '.join(unsupported)}")
    return names


def make_decoder(content_encoding: str | None) -> BodyDecoder | None:
    """A decoder for this Content-Encoding, or None when the body is not encoded."""
    names = _supported(content_encoding, _DECODERS, DecodeError)
    if not names:
        return None
    stages = [_DECODERS[name]() for name in reversed(names)]  # undone last-applied first
    return _DecoderChain([stage.decode for stage in stages], [stage.flush for stage in stages])


# --- encoding ---------------------------------------------------------------------------------


class BodyEncoder(Protocol):
    """Applies content codings incrementally, flushing every piece."""

    def encode(self, data: bytes) -> bytes:
        """``data`` encoded; with what came before, the output decodes to all of it."""
        ...

    def finish(self) -> bytes:
        """The end of the encoded body."""
        ...


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


_ENCODERS: dict[str, Callable[[], BodyEncoder]] = {
    "gzip": lambda: _ZlibEncoder(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: _ZlibEncoder(zlib.MAX_WBITS | 16),
    "deflate": lambda: _ZlibEncoder(zlib.MAX_WBITS),
    "br": _BrotliEncoder,
    "zstd": _ZstdEncoder,
}


class _EncoderChain(_Chain):
    error = EncodeError
    fault = "compressor failed"
    encode = _Chain.push
    finish = _Chain.end


def make_encoder(content_encoding: str | None) -> BodyEncoder | None:
    """An encoder applying this Content-Encoding, or None when it names no coding."""
    names = _supported(content_encoding, _ENCODERS, EncodeError)
    if not names:
        return None
    stages = [_ENCODERS[name]() for name in names]
    return _EncoderChain([stage.encode for stage in stages], [stage.finish for stage in stages])
