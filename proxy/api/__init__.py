"""tokenmeter's own HTTP API: thin FastAPI routers over ``reports`` (documented at ``/docs``).

``build(parts)`` is handed what the API needs (``deps.ApiParts``) by ``create_app``; routes take
it through typed dependencies (``deps``), and domain errors become answers in one place
(``errors``).

``/docs`` is Swagger UI served from the ``swagger-ui-bundle-v2`` package's files under
``/docs/assets/``: no CDN, so the docs work offline and behind a firewall.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from proxy.api import budgets, errors, health, keys, people, reports, seats, sessions, tasks, usage
from proxy.api.auth import require_admin, require_context_caller
from proxy.api.deps import ApiParts, keep_parts


def build(parts: ApiParts, *, lifespan: Any) -> FastAPI:
    """The FastAPI app serving /api/v1, /healthz, /metrics and the OpenAPI docs."""
    app = FastAPI(
        title="tokenmeter",
        summary="What agentic work really costs: tokens and dollars per user, team and task.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _add_docs(app)
    errors.register(app)
    keep_parts(app, parts)
    app.include_router(health.router)
    guarded = [Depends(require_admin)]
    app.include_router(budgets.mine, prefix="/api/v1")  # the caller's own: no admin token
    for module in (usage, tasks, people, seats, reports, keys, budgets):
        app.include_router(module.router, prefix="/api/v1", dependencies=guarded)
    context_callers = [Depends(require_context_caller)]
    app.include_router(sessions.router, prefix="/api/v1", dependencies=context_callers)
    return app


def _add_docs(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="tokenmeter API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
