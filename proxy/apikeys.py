"""Proxy-issued keys kept in the database: create, list, rotate, revoke, and the cache refresh.

Contract:
- ``create_key`` returns the new key once (``IssuedKey.key``); the database keeps its SHA-256
  and last 4 characters (``proxy.credentials``). ``rotate_key`` gives the same public id a new
  secret and keeps the old one valid for ``grace``; ``revoke_key`` ends a key at once. Each of the
  three writes an ``api_key_audit`` row (who, when, what changed) in the same transaction.
- ``KeyRefresher`` reloads every key into the proxy's ``KeyCache`` every ``interval_s`` (so a
  revocation reaches every replica within ``TOKENMETER_KEY_CACHE_S``) and writes the last use
  of the keys the cache saw since its previous round. It never raises into the app: a failed
  round is logged and the cache keeps what it had.

Errors: ``ValueError`` <- ``KeyProblem`` (a key that cannot change any more, an owner name that
cannot be stored) <- ``KeyNotFound``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.attribution import AttributionError, explicit_value
from proxy.credentials import KeyCache, KeyRecord, key_hash, key_label, new_key, new_public_id
from proxy.store.tables import api_key_audit, api_keys

log = logging.getLogger("tokenmeter.apikeys")


class KeyProblem(ValueError):
    """A key operation that cannot be done: the message says which key and why."""


class KeyNotFound(KeyProblem):
    """No key has this id."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key as listed: everything but its hash."""

    public_id: str
    last4: str
    user: str
    team: str | None
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    previous_until: datetime | None
    last_used_at: datetime | None

    @property
    def label(self) -> str:
        return key_label(self.public_id)

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_json(self, now: datetime) -> dict[str, Any]:
        times = ("created_at", "expires_at", "revoked_at", "rotated_at", "previous_until")
        data: dict[str, Any] = {
            "id": self.label,
            "last4": self.last4,
            "user": self.user,
            "team": self.team,
            "name": self.name,
            "state": self.state(now),
        }
        for name in (*times, "last_used_at"):
            value = getattr(self, name)
            data[name] = value.isoformat() if value is not None else None
        return data


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made or rotated: ``key`` is the only time the secret is seen."""

    key: str
    info: KeyInfo


def _now() -> datetime:
    return datetime.now(UTC)


def public_id_from(ident: str) -> str:
    """``tmk_<id>`` or ``<id>`` (as ``keys list`` shows it) -> the public id."""
    return ident.removeprefix("tmk_").split("_", 1)[0]


async def create_key(
    engine: AsyncEngine,
    user: str,
    team: str | None = None,
    name: str | None = None,
    expires_in: timedelta | None = None,
    *,
    actor: str,
    now: datetime | None = None,
) -> IssuedKey:
    """A new key for ``user``; the returned ``key`` is shown once and never stored."""
    now = now or _now()
    user, team, name = _owner_names(user, team, name)
    public_id = new_public_id()
    key = new_key(public_id)
    expires_at = now + expires_in if expires_in is not None else None
    row = {
        "public_id": public_id,
        "key_sha256": key_hash(key),
        "last4": key[-4:],
        "user": user,
        "team": team,
        "name": name,
        "created_at": now,
        "expires_at": expires_at,
    }
    detail = {"user": user, "team": team, "name": name, "expires_at": _iso(expires_at)}
    async with engine.begin() as conn:
        await conn.execute(api_keys.insert().values(**row))
        await _audit(conn, public_id, "create", actor, now, detail)
    return IssuedKey(key, await get_key(engine, public_id))


async def rotate_key(
    engine: AsyncEngine,
    ident: str,
    grace: timedelta,
    *,
    actor: str,
    now: datetime | None = None,
) -> IssuedKey:
    """A new secret on the same public id; the old one stays valid for ``grace``."""
    now = now or _now()
    public_id = public_id_from(ident)
    old = await get_key(engine, public_id)
    if old.state(now) != "active":
        raise KeyProblem(f"key {old.label} is {old.state(now)}; it cannot be rotated")
    key = new_key(public_id)
    until = now + grace
    async with engine.begin() as conn:
        await conn.execute(
            api_keys.update()
            .where(api_keys.c.public_id == public_id)
            .values(
                previous_sha256=api_keys.c.key_sha256,
                previous_until=until,
                key_sha256=key_hash(key),
                last4=key[-4:],
                rotated_at=now,
            )
        )
        detail = {"old_last4": old.last4, "new_last4": key[-4:], "old_valid_until": _iso(until)}
        await _audit(conn, public_id, "rotate", actor, now, detail)
    return IssuedKey(key, await get_key(engine, public_id))


async def revoke_key(
    engine: AsyncEngine, ident: str, *, actor: str, now: datetime | None = None
) -> KeyInfo:
    """End a key (and any old secret still in its grace window) now."""
    now = now or _now()
    public_id = public_id_from(ident)
    old = await get_key(engine, public_id)
    if old.revoked_at is not None:
        raise KeyProblem(f"key {old.label} was already revoked at {old.revoked_at.isoformat()}")
    async with engine.begin() as conn:
        await conn.execute(
            api_keys.update().where(api_keys.c.public_id == public_id).values(revoked_at=now)
        )
        await _audit(conn, public_id, "revoke", actor, now, {"revoked_at": _iso(now)})
    return await get_key(engine, public_id)


async def get_key(engine: AsyncEngine, ident: str) -> KeyInfo:
    public_id = public_id_from(ident)
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(api_keys).where(api_keys.c.public_id == public_id))
        ).first()
    if row is None:
        raise KeyNotFound(f"no key {key_label(public_id)}")
    return _info(row._mapping)


async def list_keys(engine: AsyncEngine, user: str | None = None) -> list[KeyInfo]:
    query = sa.select(api_keys).order_by(api_keys.c.user, api_keys.c.created_at)
    if user is not None:
        query = query.where(api_keys.c.user == user)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_info(row._mapping) for row in rows]


async def audit_log(engine: AsyncEngine, ident: str | None = None) -> list[dict[str, Any]]:
    """Audit rows, oldest first (one key's when ``ident`` is given)."""
    query = sa.select(api_key_audit).order_by(api_key_audit.c.id)
    if ident is not None:
        query = query.where(api_key_audit.c.public_id == public_id_from(ident))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "id": key_label(row.public_id),
            "action": row.action,
            "actor": row.actor,
            "at": row.at.isoformat(),
            "detail": json.loads(row.detail),
        }
        for row in rows
    ]


async def load_records(engine: AsyncEngine) -> list[KeyRecord]:
    """Every key as the cache holds it."""
    columns = [api_keys.c[name] for name in KeyRecord.__slots__]
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*columns))).all()
    return [KeyRecord(**row._mapping) for row in rows]


async def mark_used(engine: AsyncEngine, public_ids: set[str], at: datetime) -> None:
    if not public_ids:
        return
    async with engine.begin() as conn:
        await conn.execute(
            api_keys.update().where(api_keys.c.public_id.in_(sorted(public_ids))),
            {"last_used_at": at},
        )


async def _audit(
    conn: Any, public_id: str, action: str, actor: str, at: datetime, detail: dict[str, Any]
) -> None:
    values = {"public_id": public_id, "action": action, "actor": actor, "at": at}
    await conn.execute(api_key_audit.insert().values(**values, detail=json.dumps(detail)))


def _owner_names(
    user: str, team: str | None, name: str | None
) -> tuple[str, str | None, str | None]:
    """The names as attribution stores them (``explicit_value``); ``KeyProblem`` if one can't."""
    try:
        checked_user = explicit_value(user, "user")
        checked = explicit_value(team, "team"), explicit_value(name, "name")
    except AttributionError as exc:
        raise KeyProblem(str(exc)) from None
    if checked_user is None:
        raise KeyProblem("a key needs a user (not blank)")
    return checked_user, *checked


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _info(row: Any) -> KeyInfo:
    return KeyInfo(**{name: row[name] for name in KeyInfo.__slots__})


class KeyRefresher:
    """Keeps a ``KeyCache`` in step with the database (module doc)."""

    def __init__(
        self,
        engine: AsyncEngine,
        cache: KeyCache,
        interval_s: float,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._interval_s = interval_s
        self._clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the keys once (so the first request already finds them), then keep refreshing."""
        await self._round()
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="tokenmeter-keys")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        with contextlib.suppress(Exception):
            await self._task
        self._task = None
        await self._round(reload=False)  # the last uses seen

    async def _round(self, *, reload: bool = True) -> None:
        try:
            used = self._cache.take_used()
            if used:
                await mark_used(self._engine, used, self._clock())
            if reload:
                self._cache.replace(await load_records(self._engine))
        except Exception:
            log.exception("keys: refreshing the key cache failed; keeping the keys it has")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
            if not self._stopping.is_set():
                await self._round()
