"""What a client may send before anything goes upstream: the request target and the body.

The forwarder builds the upstream request line from the *raw* path as the client sent it
(``scope["raw_path"]``), never from the server's percent-decoded ``scope["path"]``: decoding
turned ``%0D%0A`` into a line break in the upstream request (a smuggled header or a whole
smuggled request), ``%3F`` into a query and ``%2E%2E`` into a ``..`` segment. ``check_path``
accepts only a path the upstream can read exactly as tokenmeter reads it, and ``Refusal`` says
why the rest is refused; it is answered in the provider's error format and nothing is forwarded.

A forwarded path is ``/``-separated segments of RFC 3986 ``pchar``s where:

- every percent-escape is two hex digits and decodes to a byte that is neither a control
  character, nor ``/ ? # % \\`` (each would change the path's meaning for an upstream that
  decodes it), nor an unreserved character (``%6D`` for ``m`` is how ``/v1/%6Dessages`` would
  reach the metered endpoint unmetered: unreserved characters are sent as themselves);
- no segment is empty, ``.`` or ``..``;
- the decoded path is UTF-8 without control characters.

The query string is forwarded as received; it may hold any visible ASCII character.

``read_body`` reads the request body within ``max_bytes``: refused at once from
``content-length`` when it says too much, refused as soon as a chunked body passes the cap (so
no more than the cap is ever held), and ``None`` when the client hung up before its body was
complete: a truncated body is never forwarded. How long the body may take is the server
protocol's business (``proxy/serving.py``), which cuts a slow client off with a 408.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from proxy.failures import Failure

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# Segments of unreserved characters and sub-delims that do not start with a dot: no escape, no
# empty or dot segment. Every provider path an SDK sends; anything else takes the exact check.
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9.\-_~!$&'()*+,;=:@]*)+")
_PCHARS = re.compile(r"[A-Za-z0-9.\-_~!$&'()*+,;=:@%]*")
_ESCAPE = re.compile(r"%(..)?")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_MEANINGFUL = {ord("/"): "/", ord("?"): "?", ord("#"): "#", ord("%"): "%", ord("\\"): "\\"}
_QUERY = re.compile(rb"[\x21-\x7e]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Refusal(Exception):
    """A request tokenmeter answers itself and never forwards.

    ``failure`` (its status, rendered by the provider) and ``message`` make the answer,
    ``reason`` the label of ``tokenmeter_requests_refused_total``.
    """

    def __init__(self, failure: Failure, message: str, reason: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.reason = reason

    @property
    def status(self) -> int:
        return self.failure.status


def raw_target(scope: Mapping[str, Any]) -> str:
    """The path as the client sent it, one character per byte (latin-1), still percent-encoded.

    Servers that do not give ``raw_path`` (it is optional in ASGI) get the decoded path
    re-encoded, so control characters and spaces still fail ``check_path``.
    """
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return quote(scope["path"], safe="/")
    return raw.decode("latin-1")


def check_path(path: str) -> str:
    """``path`` if it is safe to forward as is (see the module doc); else ``Refusal`` (400)."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    problem = _path_problem(path)
    if problem is None:
        return path
    raise Refusal(
        Failure.BAD_REQUEST,
        f"tokenmeter: request path refused, {problem}; nothing was forwarded",
        "bad_path",
    )


def check_query(query: bytes) -> bytes:
    """The query string as received, if it holds only visible ASCII; else ``Refusal`` (400)."""
    if not query or _QUERY.fullmatch(query):
        return query
    raise Refusal(
        Failure.BAD_REQUEST,
        "tokenmeter: query string refused, it holds a control, space or non-ASCII byte; "
        "nothing was forwarded",
        "bad_path",
    )


def _path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return f"{path[:40]!r} does not start with '/'"
    for segment in path[1:].split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            return problem
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return "its percent-escapes are not UTF-8"
    if _CONTROL.search(decoded):
        return "it encodes a control character"
    return None


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "it has an empty segment ('//' or a trailing '/')"
    if segment in (".", ".."):
        return f"it has a {segment!r} segment"
    if not _PCHARS.fullmatch(segment):
        bad = next(c for c in segment if not _PCHARS.fullmatch(c))
        if bad.isascii() and bad.isprintable() and bad != " ":
            return f"it holds the character {bad!r}"
        return f"it holds the byte 0x{ord(bad):02X}"  # a control, a space or non-ASCII
    if "%" in segment:
        for match in _ESCAPE.finditer(segment):
            problem = _escape_problem(match.group(1))
            if problem is not None:
                return problem
    return None


def _escape_problem(hex_digits: str | None) -> str | None:
    try:
        byte = int(hex_digits or "", 16)
    except ValueError:
        return f"'%{hex_digits or ''}' is not a percent-escape"
    if byte < 0x20 or byte == 0x7F:
        return f"'%{hex_digits}' encodes a control character"
    if byte in _MEANINGFUL:
        return f"'%{hex_digits}' encodes {_MEANINGFUL[byte]!r}, which changes what the path means"
    if byte in _UNRESERVED:
        return f"'%{hex_digits}' encodes {chr(byte)!r}; send it unencoded"
    return None


async def read_body(
    receive: Receive, headers: Mapping[bytes, bytes], max_bytes: int
) -> bytes | None:
    """The whole request body, at most ``max_bytes`` (else ``Refusal`` 413); ``None`` when the
    client disconnected before the body was complete."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= max_bytes:
        return body
    parts, size = [body], len(body)
    if size > max_bytes:
        raise _too_large(max_bytes)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(max_bytes: int) -> Refusal:
    mb = max_bytes / (1024 * 1024)
    return Refusal(
        Failure.BODY_TOO_LARGE,
        f"tokenmeter: request body larger than {mb:g} MB (TOKENMETER_MAX_BODY_MB); "
        "nothing was forwarded",
        "body_too_large",
    )
