"""What the API needs from the app, and the FastAPI dependencies that hand it to each route.

``create_app`` builds the parts and hands them to ``api.build``, which keeps them on the FastAPI
app; ``parts_of`` is the one place that reads them back. A route asks for what it uses, by type:
``EngineDep``, ``SettingsDep``, ``PartsDep``, and a report's window and slice: ``FiltersDep``
(``start``, ``end``, ``user``, ``team``) or ``ModelFiltersDep`` (also ``model``), each value
validated (``params``) and the window resolved as every report resolves it (``reports.resolve``).
A start after the end is a ``ReportError`` (400, ``errors``). ``CsvDep``: an imported file, the
request body as text (400 unless it is UTF-8).

Each is ``async``, so FastAPI runs it on the event loop rather than in its thread pool.
``ApiParts`` is a Protocol declared here, not the wiring type of ``app`` (which imports the API):
imports flow one way, and the API sees only what it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import reports
from proxy.api.params import Moment, Name
from proxy.attribution import RoutedPath
from proxy.config import Settings
from proxy.metrics import Metrics
from proxy.usage import Attribution


class StoreHealth(Protocol):
    """The recorder, as ``/healthz`` reads it."""

    def health(self) -> dict[str, Any]: ...


class Traffic(Protocol):
    """The forwarder, as ``/healthz`` and ``/budgets/me`` read it."""

    @property
    def in_flight(self) -> int: ...

    async def caller(self, raw_headers: list[tuple[bytes, bytes]]) -> Attribution: ...


class Identifies(Protocol):
    """The proxy's attribution (``attribution.Identifier``), for ``/budgets/me``."""

    def identify(
        self, headers: Mapping[bytes, bytes], routed: RoutedPath, body: bytes = b""
    ) -> Attribution: ...


class ApiParts(Protocol):
    """Everything the API reads from the app's parts (``app.Parts`` has all of it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def recorder(self) -> StoreHealth: ...

    @property
    def forwarder(self) -> Traffic: ...

    @property
    def identifier(self) -> Identifies: ...


def keep_parts(app: FastAPI, parts: ApiParts) -> None:
    """Keep ``parts`` on the FastAPI app for ``parts_of``."""
    app.state.parts = parts


async def parts_of(request: Request) -> ApiParts:
    """The parts ``api.build`` was handed."""
    parts: ApiParts = request.app.state.parts
    return parts


PartsDep = Annotated[ApiParts, Depends(parts_of)]


async def engine_of(parts: PartsDep) -> AsyncEngine:
    return parts.engine


async def settings_of(parts: PartsDep) -> Settings:
    return parts.settings


EngineDep = Annotated[AsyncEngine, Depends(engine_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]


async def _asked(
    start: Moment | None = None,
    end: Moment | None = None,
    user: Name | None = None,
    team: Name | None = None,
) -> reports.Filters:
    return reports.Filters(start, end, user, team)


_Asked = Annotated[reports.Filters, Depends(_asked)]


async def filters(engine: EngineDep, asked: _Asked) -> reports.Filters:
    """The window (``start``, ``end``) and people (``user``, ``team``) a report answers for."""
    return await reports.resolve(engine, asked)


async def model_filters(
    engine: EngineDep, asked: _Asked, model: Name | None = None
) -> reports.Filters:
    """``filters`` and a ``model``."""
    return await reports.resolve(engine, replace(asked, model=model))


FiltersDep = Annotated[reports.Filters, Depends(filters)]
ModelFiltersDep = Annotated[reports.Filters, Depends(model_filters)]


async def csv_text(request: Request) -> str:
    """The request body as text: 400 unless it is UTF-8."""
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the file is not UTF-8 text: {exc}") from exc


CsvDep = Annotated[str, Depends(csv_text)]
