"""tokenmeter's own HTTP API: thin FastAPI routers over ``reports`` (documented at ``/docs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI

from proxy.api import health, people, reports, tasks, usage
from proxy.api.auth import require_admin

if TYPE_CHECKING:
    from proxy.app import Parts


def build(parts: Parts, *, lifespan: Any) -> FastAPI:
    """The FastAPI app serving /api/v1, /healthz, /metrics and the OpenAPI docs."""
    app = FastAPI(
        title="tokenmeter",
        summary="What agentic work really costs: tokens and dollars per user, team and task.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.parts = parts
    app.include_router(health.router)
    guarded = [Depends(require_admin)]
    for module in (usage, tasks, people, reports):
        app.include_router(module.router, prefix="/api/v1", dependencies=guarded)
    return app
