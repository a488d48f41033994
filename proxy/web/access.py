"""Who may see the dashboard, and who may change what it shows.

Pages show pay, so they are guarded like ``/api/`` (``proxy.api.auth``):

- ``TOKENMETER_ADMIN_TOKEN`` unset: loopback callers only (``proxy.callers``), as admins;
- set: a login form takes the admin token (role ``admin``) or ``TOKENMETER_VIEWER_TOKEN``
  (role ``viewer``: sees every page, changes nothing) and answers with a session cookie.

The cookie is ``role.expiry.signature``: an HMAC-SHA256 keyed from the tokens themselves, so it
holds no token, every worker process accepts it, and changing a token ends every session. It is
``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's page sends it).
Every form that changes something is CSRF-safe twice over: its POST must come from this origin
(``Origin``, else ``Referer``, equal to the ``Host`` the browser asked), and it carries a token
derived from the session (``csrf_token``), which a page of another origin cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from proxy.callers import is_loopback, relayed_by
from proxy.config import Settings

Role = Literal["admin", "viewer"]
COOKIE = "tokenmeter_session"
SESSION_SECONDS = 12 * 3600
_LOCAL = "local"  # the session name of a loopback caller when no admin token is set


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's session: its role, or why it has none."""

    role: Role | None
    session: str  # what the CSRF token is derived from
    refusal: str | None = None  # shown when there is no role and no login can give one

    @property
    def can_change(self) -> bool:
        return self.role == "admin"


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one set of settings."""

    def __init__(self, settings: Settings) -> None:
        self.admin_token = settings.admin_token
        self.viewer_token = settings.viewer_token if settings.admin_token else None
        seed = f"tokenmeter web\0{settings.admin_token}\0{self.viewer_token}\0{settings.key_salt}"
        self._key = hashlib.sha256(seed.encode()).digest()

    @property
    def login_required(self) -> bool:
        return self.admin_token is not None

    def role_of_token(self, given: str) -> Role | None:
        """The role a token typed into the login form grants, if any."""
        if self.admin_token and _same(given, self.admin_token):
            return "admin"
        if self.viewer_token and _same(given, self.viewer_token):
            return "viewer"
        return None

    def issue(self, role: Role, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_SECONDS)
        body = f"{role}.{expiry}"
        return f"{body}.{self._sign('session', body)}"

    def caller(self, cookie: str | None, peer: str, headers: dict[str, str]) -> Caller:
        """The role of a request from ``peer`` with session ``cookie``."""
        if not self.login_required:
            return _local_caller(peer, headers)
        role = self._read(cookie or "")
        return Caller(role, cookie or "") if role else Caller(None, "")

    def csrf_token(self, caller: Caller) -> str:
        return self._sign("csrf", caller.session)

    def csrf_ok(self, caller: Caller, given: str) -> bool:
        return _same(given, self.csrf_token(caller))

    def _read(self, cookie: str) -> Role | None:
        role, _, rest = cookie.partition(".")
        expiry, _, signature = rest.partition(".")
        if role not in ("admin", "viewer") or not expiry.isdigit():
            return None
        if not _same(signature, self._sign("session", f"{role}.{expiry}")):
            return None
        if int(expiry) < time.time():
            return None
        return "admin" if role == "admin" else "viewer"

    def _sign(self, purpose: str, body: str) -> str:
        return hmac.new(self._key, f"{purpose}\0{body}".encode(), hashlib.sha256).hexdigest()


def _local_caller(peer: str, headers: dict[str, str]) -> Caller:
    relayed = relayed_by(headers)
    if relayed:
        why = f"a request relayed by a proxy ({relayed} header) needs TOKENMETER_ADMIN_TOKEN"
        return Caller(None, "", why)
    if not is_loopback(peer):
        return Caller(
            None, "", "the dashboard serves loopback only unless TOKENMETER_ADMIN_TOKEN is set"
        )
    return Caller("admin", _LOCAL)


def same_origin(headers: dict[str, str]) -> bool:
    """Whether a POST comes from a page of this origin (``Origin``, else ``Referer``)."""
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer")
    if not origin or origin == "null":
        return False
    return bool(host) and urlsplit(origin).netloc == host


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
