"""Who pays for a request: request headers and path in, an ``Attribution`` out.

Sources, strongest first: an authenticated identity (a proxy-issued key the forwarder checked,
source ``key``; else the key map from the salted fingerprint of the client's own provider key,
source ``key_map``) decides user and team, and headers or a path prefix cannot override it (the
attempt is counted; their task still applies); explicit ``x-tokenmeter-*`` headers (Claude Code
sets them through ``ANTHROPIC_CUSTOM_HEADERS``); the same as a path prefix ``/u/{user}/t/{task}``
for clients that can only set a base URL; what the client says about itself (Claude Code's
session header, or ``metadata.user_id``). With no explicit task the session is the task, so every
Claude Code session has a cost view with no set-up. Raw keys and prompt text are never kept:
only the fingerprint leaves this module.

The request body is parsed only when no header names the session and the body is small enough to
be worth it; Claude Code (v2.1.86+) always sends the session header, so its 100 KB bodies are never
parsed on the hot path.

Explicit values (the three headers and the path prefix) are stored exactly as sent, whatever
printable text they hold (``/``, quotes, spaces inside, any script), without the blanks around
them. Header bytes are read as UTF-8 when they are valid UTF-8, else as ISO-8859-1: HTTP's
historical charset, and what Node sends (Claude Code's ``fetch`` writes ``José`` as the single
byte 0xE9 and refuses characters beyond U+00FF), so ``José`` arrives as ``José`` either way. A path
segment is percent-decoded and must be UTF-8 (RFC 3986). A value that is longer than
``MAX_VALUE_CHARS`` characters, holds a control character (``CONTROL``; C1 controls included,
which is what stray bytes 0x80-0x9F decode to) or, in the path, is not UTF-8 raises
``AttributionError`` naming where it came from: the forwarder answers 400 and forwards nothing,
instead of recording the request unattributed. What the client says about itself (session and
agent ids) is only ever used when it is a plain label.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from proxy.billing import classify
from proxy.text import CONTROL, NAME_MAX_CHARS
from proxy.usage import Attribution

USER_HEADER = b"x-tokenmeter-user"
TEAM_HEADER = b"x-tokenmeter-team"
TASK_HEADER = b"x-tokenmeter-task"
SESSION_HEADER = b"x-claude-code-session-id"
AGENT_HEADER = b"x-claude-code-agent-id"
OWN_HEADER_PREFIX = b"x-tokenmeter-"

MAX_VALUE_CHARS = NAME_MAX_CHARS  # the name rule of proxy/text.py

_MAX_BODY_SCAN = 4 * 1024 * 1024
_LEGACY_USER_ID = re.compile(r"_session_([0-9A-Za-z-]+)$")
_LABEL = re.compile(r"^[A-Za-z0-9._@+:=-]{1,128}$")
_BLANKS = " \t"


class AttributionError(ValueError):
    """An explicit attribution value that cannot be stored as sent; the message names its source."""


@dataclass(frozen=True, slots=True)
class KeyOwner:
    user: str
    team: str | None = None


@dataclass(frozen=True, slots=True)
class RoutedPath:
    """A request path with tokenmeter's own prefix removed, and what that prefix said."""

    path: str
    user: str | None = None
    task: str | None = None


def split_path(path: str) -> RoutedPath:
    """Remove a leading ``/u/{user}`` and/or ``/t/{task}`` prefix (either optional, that order).

    ``path`` is the raw (percent-encoded) path; user and task come back still encoded.
    """
    user = task = None
    rest = path
    if rest.startswith("/u/"):
        user, rest = _take_segment(rest[3:])
    if rest.startswith("/t/"):
        task, rest = _take_segment(rest[3:])
    if user is None and task is None:
        return RoutedPath(path)
    return RoutedPath(rest or "/", user, task)


def _take_segment(rest: str) -> tuple[str | None, str]:
    segment, sep, tail = rest.partition("/")
    return (segment or None), (sep + tail)


def fingerprint(key: str, salt: str) -> str:
    """Salted SHA-256 of a client key, shortened: identifies a caller without storing its key."""
    digest = hashlib.sha256(salt.encode() + b"\0" + key.encode()).hexdigest()
    return f"fp_{digest[:24]}"


def session_from_metadata(user_id: str) -> str | None:
    """Claude Code's ``metadata.user_id``: legacy ``user_…_account_…_session_<id>`` or JSON."""
    if user_id.startswith("{"):
        try:
            parsed = json.loads(user_id)
        except ValueError:
            return None
        session = parsed.get("session_id") if isinstance(parsed, dict) else None
        return session if isinstance(session, str) and session else None
    match = _LEGACY_USER_ID.search(user_id)
    return match.group(1) if match else None


def _session_from_body(body: bytes) -> str | None:
    if not body or len(body) > _MAX_BODY_SCAN or b'"user_id"' not in body:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    metadata = parsed.get("metadata") if isinstance(parsed, dict) else None
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    return session_from_metadata(user_id) if isinstance(user_id, str) else None


def explicit_value(value: str | None, source: str) -> str | None:
    """An attribution value as stored: the text without surrounding blanks, or None if blank.

    ``source`` names where it came from, for the error (a header name, or the path prefix).
    """
    if value is None:
        return None
    text = value.strip(_BLANKS)
    if len(text) > MAX_VALUE_CHARS:
        raise AttributionError(
            f"{source}: the value is {len(text)} characters long, more than {MAX_VALUE_CHARS}"
        )
    control = CONTROL.search(text)
    if control is not None:
        raise AttributionError(
            f"{source}: the value holds the control character U+{ord(control.group()):04X}"
        )
    return text or None


def _path_value(segment: str | None, source: str) -> str | None:
    if segment is None:
        return None
    try:
        text = unquote_to_bytes(segment.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        raise AttributionError(f"{source}: the value is not UTF-8") from None
    return explicit_value(text, source)


def _header_value(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:  # ISO-8859-1, as Node and browsers send it (module doc)
        text = value.decode("latin-1")
    return explicit_value(text, name.decode())


def _label(value: bytes | str | None) -> str | None:
    """What a client says about itself (session, agent), if it is a plain label; else ignored."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = text.strip()
    return text if text and _LABEL.match(text) else None


def _client_key(headers: Mapping[bytes, bytes]) -> str | None:
    key = headers.get(b"x-api-key")
    if key:
        return key.decode("latin-1")
    auth = headers.get(b"authorization")
    if auth and auth[:7].lower() == b"bearer ":
        return auth[7:].decode("latin-1").strip()
    return None


VERIFIED = frozenset({"key", "oidc"})  # identities tokenmeter checked: nothing overrides them


def with_owner(
    user: str | None, team: str | None, source: str, owner: KeyOwner
) -> tuple[str | None, str | None, str]:
    """(user, team, source) once the key map names the key's owner: the provider authenticated
    the key, so its owner decides whatever headers or a path prefix said; only an identity
    tokenmeter verified itself (a proxy-issued key) is kept as it is. The proxy applies it
    live, ``tokenmeter reattribute`` to past events."""
    if source in VERIFIED:
        return user, team, source
    return owner.user, owner.team, "key_map"


OverrideCounter = Callable[[str], None]
"""Told the source of an authenticated identity a header or path prefix tried to override."""


@dataclass(frozen=True, slots=True)
class Verified:
    """An identity tokenmeter checked itself (a proxy-issued key, an OIDC token): its owner,
    its label and its source."""

    owner: KeyOwner
    label: str | None  # stored as the event's key_fingerprint (``tmk_<public id>``)
    source: str = "key"


class Identifier:
    """Builds the ``Attribution`` of a request; holds the salt and the key → person map."""

    def __init__(
        self,
        salt: str,
        key_owners: Mapping[str, KeyOwner] | None = None,
        overridden: OverrideCounter | None = None,
    ) -> None:
        self._salt = salt
        self._owners = dict(key_owners or {})
        self._fingerprints: dict[str, str] = {}
        self._overridden = overridden

    def identify(
        self,
        headers: Mapping[bytes, bytes],
        routed: RoutedPath,
        body: bytes = b"",
        verified: Verified | None = None,
    ) -> Attribution:
        """Decide who pays. ``headers`` has lower-case names; ``body`` is read only if needed;
        ``verified`` is the identity of a proxy-issued key the forwarder checked.

        Raises ``AttributionError`` for an explicit value that cannot be stored as sent.
        """
        user, team = _header_value(headers, USER_HEADER), _header_value(headers, TEAM_HEADER)
        task = _header_value(headers, TASK_HEADER)
        path_user = _path_value(routed.user, "the path prefix /u/{user}")
        path_task = _path_value(routed.task, "the path prefix /t/{task}")
        source = "header" if (user or team or task) else "none"
        if source == "none" and (path_user or path_task):
            user, task, source = path_user, path_task, "path"
        if verified is not None:
            fp: str | None = verified.label
            owner: KeyOwner | None = verified.owner
            owner_source = verified.source
        else:
            fp = self._fingerprint(headers)
            owner = self._owners.get(fp) if fp else None
            owner_source = "key_map"
        if owner is not None:
            if (user or owner.user) != owner.user or (team or owner.team) != owner.team:
                self._count_override(owner_source)
            user, team, source = owner.user, owner.team, owner_source
        session = _label(headers.get(SESSION_HEADER))
        if session is None and task is None:
            session = _label(_session_from_body(body))
        if source == "none" and session:
            source = "client"
        return Attribution(
            user=user,
            team=team,
            task=task or session,
            session=session,
            agent=_label(headers.get(AGENT_HEADER)),
            key_fingerprint=fp,
            source=source,
            billing=classify(headers),
        )

    def _count_override(self, source: str) -> None:
        if self._overridden is not None:
            self._overridden(source)

    def needs_body(self, headers: Mapping[bytes, bytes]) -> bool:
        """True when only the body could name the session (no task or session header)."""
        return SESSION_HEADER not in headers and TASK_HEADER not in headers

    def _fingerprint(self, headers: Mapping[bytes, bytes]) -> str | None:
        key = _client_key(headers)
        if key is None:
            return None
        cached = self._fingerprints.get(key)
        if cached is None:
            if len(self._fingerprints) > 10_000:
                self._fingerprints.clear()
            cached = self._fingerprints[key] = fingerprint(key, self._salt)
        return cached


def load_key_owners(path: Path) -> dict[str, KeyOwner]:
    """Read ``{"fp_…": {"user": "alice", "team": "core"}}`` (JSON) into a fingerprint map."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of fingerprint -> {{user, team}}")
    owners: dict[str, KeyOwner] = {}
    for fp, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), str):
            raise ValueError(f"{path}: entry {fp!r} needs a string 'user'")
        team = entry.get("team")
        try:
            user = explicit_value(entry["user"], f"{path}: {fp} user")
            team = explicit_value(team, f"{path}: {fp} team") if isinstance(team, str) else None
        except AttributionError as exc:
            raise ValueError(str(exc)) from None
        if user is None:
            raise ValueError(f"{path}: entry {fp!r} needs a non-blank 'user'")
        owners[fp] = KeyOwner(user=user, team=team)
    return owners
