"""Guarding ``/api/``: a bearer admin token when configured, else loopback clients only.

Compensation and per-person spend are sensitive. Proxy traffic itself is never affected.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def require_admin(request: Request) -> None:
    """FastAPI dependency: 401 without the admin token; 403 off loopback when none is set."""
    token = request.app.state.parts.settings.admin_token
    if token is None:
        client = request.client.host if request.client else ""
        if client not in _LOOPBACK and not client.startswith("127."):
            raise HTTPException(
                403, "the API serves loopback only unless TOKENMETER_ADMIN_TOKEN is set"
            )
        return
    given = request.headers.get("authorization", "")
    expected = f"Bearer {token}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"}
        )
