"""Guarding ``/api/`` and ``/metrics``; proxy traffic itself is never affected.

- ``/api/``: a bearer admin token when ``TOKENMETER_ADMIN_TOKEN`` is set, else loopback callers
  only. Compensation and per-person spend are sensitive.
- ``POST /api/v1/sessions/{id}/context`` and ``POST /api/v1/claude-code/context`` (a session's
  work context, from developers' machines): loopback callers, or a bearer
  ``TOKENMETER_CONTEXT_TOKEN`` or admin token. They write labels and read back only the spend of
  the session named (its cost, its person's month and tightest budget: the status line), so they
  can be opened wider than the rest of ``/api/``.
- ``/metrics``: a bearer token when ``TOKENMETER_METRICS_TOKEN`` is set, else open.

"Loopback" is judged as ``proxy.callers`` says (the TCP peer alone; a relayed request is never a
local caller).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from proxy.api.deps import SettingsDep
from proxy.callers import is_loopback, relayed_by


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """FastAPI dependency: 401 without the admin token; 403 off loopback when none is set."""
    token = settings.admin_token
    if token is None:
        _require_local_caller(request)
    else:
        _require_bearer(request, token, "admin")


async def require_context_caller(request: Request, settings: SettingsDep) -> None:
    """FastAPI dependency: a loopback caller, or the context token or admin token."""
    given = request.headers.get("authorization", "")
    tokens = [t for t in (settings.context_token, settings.admin_token) if t is not None]
    if any(hmac.compare_digest(given.encode(), f"Bearer {t}".encode()) for t in tokens):
        return
    if tokens and not _is_local_caller(request):
        raise HTTPException(
            401, "missing or wrong context token", headers={"WWW-Authenticate": "Bearer"}
        )
    _require_local_caller(request)


def _is_local_caller(request: Request) -> bool:
    relayed = relayed_by(request.headers) is not None
    return not relayed and is_loopback(request.client.host if request.client else "")


async def require_metrics_token(request: Request, settings: SettingsDep) -> None:
    """FastAPI dependency: 401 without the metrics token when one is set."""
    token = settings.metrics_token
    if token is not None:
        _require_bearer(request, token, "metrics")


def _require_local_caller(request: Request) -> None:
    relayed = relayed_by(request.headers)
    if relayed:
        raise HTTPException(
            403,
            f"a request relayed by a proxy ({relayed} header) needs TOKENMETER_ADMIN_TOKEN: "
            "without it the API serves callers on this host only",
        )
    if not is_loopback(request.client.host if request.client else ""):
        raise HTTPException(
            403, "the API serves loopback only unless TOKENMETER_ADMIN_TOKEN is set"
        )


def _require_bearer(request: Request, token: str, name: str) -> None:
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401, f"missing or wrong {name} token", headers={"WWW-Authenticate": "Bearer"}
        )
