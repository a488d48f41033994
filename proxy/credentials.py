"""Proxy-issued keys: their format, their hash, and the in-memory check on the hot path.

A tokenmeter key is ``tmk_<public id>_<secret>``: the public id (12 hex characters) names the
key in the database, in reports and in attribution (``key_fingerprint`` is ``tmk_<public id>``),
so a rotation (a new secret on the same id) never splits history. Only the SHA-256 of the whole
key and its last 4 characters are stored; the secret is shown once, when it is made.

``KeyCache`` holds every key's record in memory (``proxy/store/keys.py`` refreshes it from the
database every ``TOKENMETER_KEY_CACHE_S``), so checking a key costs one SHA-256 and a dict
lookup, never a database round trip. ``KeyGate`` decides what happens to a request's key:

- a tokenmeter key that checks out: the request is the key owner's (``Admitted.owner``) and
  goes upstream with the company's provider key in the header the provider expects; the
  tokenmeter key is removed from every header that held it;
- a tokenmeter key that does not (unknown, wrong secret, revoked, expired): ``KeyRefused``;
- any other key: passed through as it came, unless keys are required (``KeyRefused``).

A leaf of pure logic: no I/O; the clock is handed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy.failures import Failure

PREFIX = "tmk_"
_KEY = re.compile(r"tmk_([0-9a-f]{12})_([0-9A-Za-z]{32})")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY_HEADERS = (b"x-api-key", b"authorization")


class KeyRefused(Exception):
    """A request whose key tokenmeter will not forward; the message says why (never the key)."""

    def __init__(self, message: str, reason: str, failure: Failure = Failure.UNAUTHORIZED) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # the label of tokenmeter_requests_refused_total
        self.failure = failure


def new_public_id() -> str:
    return secrets.token_hex(6)


def new_key(public_id: str) -> str:
    """A fresh key on ``public_id``: 32 random alphanumerics (190 bits)."""
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(32))
    return f"{PREFIX}{public_id}_{secret}"


def key_hash(key: str) -> str:
    """What the database keeps of a key: the SHA-256 of the whole key, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def public_id_of(key: str) -> str | None:
    """The public id of a well-formed tokenmeter key, else None."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def key_label(public_id: str) -> str:
    """How a key is named in attribution and reports (``usage_events.key_fingerprint``)."""
    return f"{PREFIX}{public_id}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the cache knows of one key (one row of ``api_keys``)."""

    public_id: str
    key_sha256: str
    user: str
    team: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    previous_sha256: str | None = None  # the secret before the last rotation …
    previous_until: datetime | None = None  # … valid until then


class KeyCache:
    """Every key's record by public id; replaced whole by the refresher, read per request."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self._records = {r.public_id: r for r in records}
        self.used: set[str] = set()  # public ids used since the refresher last took them
        self.loaded = False

    def replace(self, records: Iterable[KeyRecord]) -> None:
        self._records = {r.public_id: r for r in records}
        self.loaded = True

    def take_used(self) -> set[str]:
        used, self.used = self.used, set()
        return used

    def check(self, key: str, now: datetime) -> KeyRecord:
        """The record of a valid key, or ``KeyRefused`` saying why it is not valid."""
        public_id = public_id_of(key)
        record = self._records.get(public_id) if public_id else None
        if record is None:
            raise KeyRefused("tokenmeter: unknown or malformed tokenmeter key", "unknown_key")
        digest = key_hash(key)
        current = hmac.compare_digest(digest, record.key_sha256)
        if not current and not self._previous(record, digest, now):
            raise KeyRefused(
                f"tokenmeter: wrong secret for key {key_label(record.public_id)}", "bad_key"
            )
        if record.revoked_at is not None and record.revoked_at <= now:
            raise KeyRefused(
                f"tokenmeter: key {key_label(record.public_id)} was revoked "
                f"at {_when(record.revoked_at)}",
                "revoked_key",
            )
        if record.expires_at is not None and record.expires_at <= now:
            raise KeyRefused(
                f"tokenmeter: key {key_label(record.public_id)} expired at "
                f"{_when(record.expires_at)}",
                "expired_key",
            )
        self.used.add(record.public_id)
        return record

    @staticmethod
    def _previous(record: KeyRecord, digest: str, now: datetime) -> bool:
        if record.previous_sha256 is None or record.previous_until is None:
            return False
        return now < record.previous_until and hmac.compare_digest(digest, record.previous_sha256)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a checked credential says the caller is: ``label`` is stored as the event's key id
    (``tmk_<public id>`` for a key), ``source`` as its attribution source (``key``, ``oidc``)."""

    user: str
    team: str | None
    label: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """What the gate made of a request's credential: who it proves the caller is (None: not a
    tokenmeter credential) and the headers to send upstream (None: unchanged)."""

    identity: Identity | None = None
    headers: list[tuple[bytes, bytes]] | None = None


PASSTHROUGH = Admitted()


def client_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every key a client sent: ``x-api-key`` values and ``Authorization: Bearer`` tokens."""
    found = []
    for name, value in headers:
        if name == b"x-api-key":
            found.append(value.decode("latin-1").strip())
        elif name == b"authorization" and value[:7].lower() == b"bearer ":
            found.append(value[7:].decode("latin-1").strip())
    return found


class KeyGate:
    """Checks the key of each request (module doc). ``company_keys`` maps a provider name to
    the provider key sent upstream in place of a tokenmeter key."""

    def __init__(
        self,
        cache: KeyCache,
        company_keys: Mapping[str, str],
        *,
        require_key: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cache = cache
        self._company_keys = dict(company_keys)
        self._require_key = require_key
        self._now = now

    def admit(
        self,
        provider: str,
        raw_headers: list[tuple[bytes, bytes]],
        key_header: tuple[bytes, bytes],
    ) -> Admitted:
        """``key_header`` is the provider's (header name, value prefix) for its API key."""
        keys = client_keys(raw_headers)
        ours = [key for key in keys if key.startswith(PREFIX)]
        if not ours:
            return self.passes()
        if len(set(ours)) > 1:
            raise KeyRefused("tokenmeter: two different tokenmeter keys in one request", "bad_key")
        record = self.cache.check(ours[0], self._now())
        identity = Identity(record.user, record.team, key_label(record.public_id), "key")
        return self.swap(identity, provider, raw_headers, key_header)

    def passes(self) -> Admitted:
        """A request with no credential of tokenmeter's: passed through, unless one is required."""
        if self._require_key:
            raise KeyRefused(
                "tokenmeter: this proxy requires a tokenmeter key (tmk_…) in x-api-key or "
                "Authorization: Bearer",
                "key_required",
            )
        return PASSTHROUGH

    def swap(
        self,
        identity: Identity,
        provider: str,
        raw_headers: list[tuple[bytes, bytes]],
        key_header: tuple[bytes, bytes],
    ) -> Admitted:
        """``identity`` admitted: every client key header replaced by the company key."""
        company = self._company_keys.get(provider)
        if company is None:
            raise KeyRefused(
                f"tokenmeter: no company key for {provider} is configured on this proxy "
                f"(TOKENMETER_{provider.upper()}_API_KEY)",
                "no_company_key",
                Failure.NOT_CONFIGURED,
            )
        name, prefix = key_header
        headers = [(n, v) for n, v in raw_headers if n not in _KEY_HEADERS]
        headers.append((name, prefix + company.encode("latin-1")))
        return Admitted(identity, headers)
