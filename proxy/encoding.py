"""Incremental undoing of HTTP content codings, to meter a body that is forwarded as it came.

Why it exists: Claude Code sends ``Accept-Encoding: gzip, deflate, br, zstd``, so an answer may
arrive compressed. The proxy forwards the compressed bytes untouched; the usage tap needs the
decoded JSON or SSE, chunk by chunk, without holding the body.

Contract:

- ``make_decoder(content_encoding)`` returns ``None`` when there is nothing to undo (no header,
  ``identity``), else a ``BodyDecoder``. Codings are undone in the reverse of the order the header
  lists them (``gzip, br`` = br first, then gzip). Names are case-insensitive; ``x-gzip`` is gzip.
- ``decode(chunk)`` returns the decoded bytes that chunk made available (possibly ``b""``);
  ``flush()`` returns whatever is left at the end of the body.
- ``deflate`` accepts both the zlib-wrapped form the RFC names and the raw form some servers send;
  concatenated gzip members and zstd frames decode as one body.
- Failures form one small tree, so a caller catches exactly one type::

      ValueError
       └── DecodeError            corrupt data, or a coding this module does not support

  Nothing else escapes ``make_decoder``, ``decode`` or ``flush``.
- No size limit here: one chunk may expand many times over, so a caller that holds decoded bytes
  caps what it keeps.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli  # type: ignore[import-untyped]  # brotli ships no type information
import zstandard


class DecodeError(ValueError):
    """A body could not be decoded: corrupt data, or an unsupported content coding."""


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


_FACTORIES: dict[str, type[_Gzip | _Deflate | _Brotli | _Zstd]] = {
    "gzip": _Gzip,
    "x-gzip": _Gzip,
    "deflate": _Deflate,
    "br": _Brotli,
    "zstd": _Zstd,
}


class _Chain:
    """Applies the decoders in order and turns every library failure into ``DecodeError``."""

    def __init__(self, stages: list[BodyDecoder]) -> None:
        self._stages = stages

    def decode(self, chunk: bytes) -> bytes:
        try:
            for stage in self._stages:
                chunk = stage.decode(chunk)
        except Exception as exc:  # zlib.error, brotli.error, zstandard.ZstdError, ...
            raise DecodeError(f"corrupt compressed body: {exc}") from exc
        return chunk

    def flush(self) -> bytes:
        out = b""
        try:
            for stage in self._stages:
                out = stage.decode(out) + stage.flush()
        except Exception as exc:
            raise DecodeError(f"corrupt compressed body: {exc}") from exc
        return out


def codings(content_encoding: str | None) -> list[str]:
    """The codings of a Content-Encoding header in the order they were applied."""
    names = (name.strip().lower() for name in (content_encoding or "").split(","))
    return [name for name in names if name and name != "identity"]


def make_decoder(content_encoding: str | None) -> BodyDecoder | None:
    """A decoder for this Content-Encoding, or None when the body is not encoded."""
    names = codings(content_encoding)
    if not names:
        return None
    unsupported = [name for name in names if name not in _FACTORIES]
    if unsupported:
        raise DecodeError(f"unsupported content coding: {', '.join(unsupported)}")
    return _Chain([_FACTORIES[name]() for name in reversed(names)])
