"""The reports finance and engineers ask for: blended $/MTok, spend vs compensation, spread, ROI.

Every route answers JSON, or CSV with ``?format=csv`` / ``Accept: text/csv``. Bad arguments and
compensation that cannot be converted to USD are 400 with the reason.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from proxy import reports
from proxy.api.params import Moment, Name
from proxy.api.tabular import respond

router = APIRouter(prefix="/reports", tags=["reports"])

Days = Annotated[int, Query(ge=1, le=3660, description="trailing window, annualized × 365/days")]


@router.get("/blended", summary="Real blended $/MTok beside sticker $/MTok and cache savings")
async def get_blended(
    request: Request,
    by: Annotated[str, Query(description="one of " + ", ".join(reports.BLENDED_GROUPS))] = "model",
    start: Moment | None = None,
    end: Moment | None = None,
    user: Name | None = None,
    team: Name | None = None,
    model: Name | None = None,
) -> Response:
    engine = request.app.state.parts.engine
    filters = await reports.resolve(engine, reports.Filters(start, end, user, team, model))
    try:
        report = await reports.blended(engine, by, filters)
    except reports.ReportError as exc:
        raise HTTPException(400, str(exc)) from exc
    total = {by: "(total)", **report.total.as_json()}
    return respond(request, report.as_json(), [*report.rows(), total], f"blended-by-{by}")


@router.get("/compensation", summary="Annualized token spend vs compensation: person, team, org")
async def get_compensation(
    request: Request, days: Days = 30, end: Moment | None = None
) -> Response:
    parts = request.app.state.parts
    try:
        window = reports.trailing(days, end)
        report = await reports.compensation_report(
            parts.engine, window, parts.settings.usd_per_currency
        )
    except reports.ReportError as exc:
        raise HTTPException(400, str(exc)) from exc
    return respond(request, report.as_json(), report.rows(), "compensation")


@router.get("/distribution", summary="Percentiles, top-N share and Gini of per-person use")
async def get_distribution(
    request: Request,
    days: Days = 30,
    end: Moment | None = None,
    metric: Annotated[str, Query(description="tokens or cost_usd")] = "tokens",
    top: Annotated[list[int] | None, Query(description="N for top-N shares")] = None,
) -> Response:
    engine = request.app.state.parts.engine
    try:
        window = reports.trailing(days, end)
        found = await reports.distribution(engine, window, metric, top or [1, 5, 10])
    except reports.ReportError as exc:
        raise HTTPException(400, str(exc)) from exc
    return respond(request, found.as_json(), found.rows(), f"distribution-{metric}")


@router.get("/roi", summary="Tasks with a value: cost, value and ROI, and their totals")
async def get_roi(
    request: Request,
    start: Moment | None = None,
    end: Moment | None = None,
    user: Name | None = None,
    team: Name | None = None,
) -> Response:
    engine = request.app.state.parts.engine
    filters = await reports.resolve(engine, reports.Filters(start, end, user, team))
    report = await reports.roi_report(engine, filters)
    data = report.as_json()
    total = {"task_id": "(total)", **data["total"]}
    return respond(request, data, [*data["rows"], total], "roi")
