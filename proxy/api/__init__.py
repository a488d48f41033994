"""tokenmeter's own HTTP API: thin FastAPI routers over ``reports`` (documented at ``/docs``).

``/docs`` is Swagger UI served from the ``swagger-ui-bundle-v2`` package's files under
``/docs/assets/``: no CDN, so the docs work offline and behind a firewall.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from proxy import reports as report_logic
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
        docs_url=None,
        redoc_url=None,
    )
    _add_docs(app)
    app.add_exception_handler(report_logic.ReportError, _bad_request)
    app.state.parts = parts
    app.include_router(health.router)
    guarded = [Depends(require_admin)]
    for module in (usage, tasks, people, reports):
        app.include_router(module.router, prefix="/api/v1", dependencies=guarded)
    return app


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    """A report asked for with arguments that make no sense (start after end …): 400."""
    return JSONResponse({"detail": str(exc)}, status_code=400)


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
