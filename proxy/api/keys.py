"""Proxy-issued keys over REST: create, list, rotate, revoke, and the audit trail.

Like every ``/api/`` route these need the admin token (or loopback). A created or rotated key is
in the answer once (``key``) and never again; lists show its last 4 characters. Every running
proxy sees a change within ``TOKENMETER_KEY_CACHE_S``. Audit rows name the actor ``api``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from proxy import apikeys
from proxy.api.deps import EngineDep
from proxy.api.params import Name

router = APIRouter(prefix="/keys", tags=["keys"])
ACTOR = "api"
KeyId = Name  # tmk_<public id>, or the public id alone


class KeyIn(BaseModel):
    """A new key: who it bills, and for how long (days; none: until revoked)."""

    model_config = ConfigDict(extra="forbid")

    user: Name
    team: Name | None = None
    name: Name | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class RotateIn(BaseModel):
    """How long the old secret keeps working (minutes; 0: not at all)."""

    model_config = ConfigDict(extra="forbid")

    grace_minutes: int = Field(default=24 * 60, ge=0, le=30 * 24 * 60)


def _now() -> datetime:
    return datetime.now(UTC)


def _issued(issued: apikeys.IssuedKey) -> dict[str, Any]:
    return {"key": issued.key, **issued.info.as_json(_now())}


@router.post("", status_code=201, summary="Create a key (the secret is in this answer only)")
async def create_key(body: KeyIn, engine: EngineDep) -> dict[str, Any]:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = await apikeys.create_key(engine, body.user, body.team, body.name, expires, actor=ACTOR)
    return _issued(issued)


@router.get("", summary="Every key (or one user's): owner, last 4, state, last use")
async def list_keys(engine: EngineDep, user: Name | None = None) -> dict[str, Any]:
    now = _now()
    return {"rows": [info.as_json(now) for info in await apikeys.list_keys(engine, user)]}


@router.post("/{key_id}/rotate", summary="A new secret on the same id; the old one for a grace")
async def rotate_key(key_id: KeyId, engine: EngineDep, body: RotateIn | None = None) -> Any:
    grace = timedelta(minutes=(body or RotateIn()).grace_minutes)
    return _issued(await apikeys.rotate_key(engine, key_id, grace, actor=ACTOR))


@router.post("/{key_id}/revoke", summary="End a key now (every proxy within the cache interval)")
async def revoke_key(key_id: KeyId, engine: EngineDep) -> dict[str, Any]:
    return (await apikeys.revoke_key(engine, key_id, actor=ACTOR)).as_json(_now())


@router.get("/{key_id}/audit", summary="Who created, rotated and revoked this key, and when")
async def key_audit(key_id: KeyId, engine: EngineDep) -> dict[str, Any]:
    await apikeys.get_key(engine, key_id)  # 404 for a key that never was
    return {"rows": await apikeys.audit_log(engine, key_id)}
