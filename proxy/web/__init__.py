"""The dashboard: server-rendered pages at ``/`` and ``/web/`` for finance and team leads.

Pages are Jinja2 templates over ``proxy.reports`` (the figures the REST API and the CLI show,
to the cent), with one vendored chart library (Chart.js, MIT, ``static/``) and no CDN, so the
dashboard works offline. ``build(parts)`` makes the FastAPI app ``proxy.app`` routes ``/`` and
``/web/`` to; it never shadows a provider path (``/v1/…``). Access: ``access``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.config import Settings
from proxy.pricing import Pricer
from proxy.web import figures, pages
from proxy.web.access import Sessions

PREFIX = "/web/"
STATIC = Path(__file__).parent / "static"


class WebParts(Protocol):
    """What the pages read from the app's parts (``app.Parts`` has all of it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def pricer(self) -> Pricer: ...


def is_web_path(path: str) -> bool:
    """Whether the dashboard answers ``path``: ``/`` itself and everything under ``/web/``."""
    return path == "/" or path.startswith(PREFIX)


def build(parts: WebParts) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.parts = parts
    app.state.sessions = Sessions(parts.settings)
    app.state.menus = figures.Menus()
    app.mount("/web/static", StaticFiles(directory=STATIC), name="web-static")
    app.include_router(pages.router)
    pages.register_errors(app)
    return app
