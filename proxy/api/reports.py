"""The reports finance and engineers ask for: blended $/MTok, spend vs compensation, spread, ROI.

Every route answers JSON, or CSV with ``?format=csv`` / ``Accept: text/csv``. Bad arguments and
compensation that cannot be converted to USD are 400 with the reason (``errors``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from proxy import reports
from proxy.api.deps import EngineDep, FiltersDep, ModelFiltersDep, SettingsDep
from proxy.api.params import Moment
from proxy.api.tabular import respond

router = APIRouter(prefix="/reports", tags=["reports"])

Days = Annotated[int, Query(ge=1, le=3660, description="trailing window, annualized × 365/days")]


@router.get("/blended", summary="Real blended $/MTok beside sticker $/MTok and cache savings")
async def get_blended(
    request: Request,
    engine: EngineDep,
    filters: ModelFiltersDep,
    by: Annotated[str, Query(description="one of " + ", ".join(reports.BLENDED_GROUPS))] = "model",
) -> Response:
    report = await reports.blended(engine, by, filters)
    total = {by: "(total)", **report.total.as_json()}
    return respond(request, report.as_json(), [*report.rows(), total], f"blended-by-{by}")


@router.get("/compensation", summary="Annualized token spend vs compensation: person, team, org")
async def get_compensation(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    days: Days = 30,
    end: Moment | None = None,
) -> Response:
    window = reports.trailing(days, end)
    report = await reports.compensation_report(engine, window, settings.usd_per_currency)
    return respond(request, report.as_json(), report.rows(), "compensation")


@router.get("/distribution", summary="Percentiles, top-N share and Gini of per-person use")
async def get_distribution(
    request: Request,
    engine: EngineDep,
    days: Days = 30,
    end: Moment | None = None,
    metric: Annotated[str, Query(description="tokens or cost_usd")] = "tokens",
    top: Annotated[list[int] | None, Query(description="N for top-N shares")] = None,
) -> Response:
    window = reports.trailing(days, end)
    found = await reports.distribution(engine, window, metric, top or [1, 5, 10])
    return respond(request, found.as_json(), found.rows(), f"distribution-{metric}")


@router.get("/roi", summary="Tasks with a value: cost, value and ROI, and their totals")
async def get_roi(request: Request, engine: EngineDep, filters: FiltersDep) -> Response:
    report = await reports.roi_report(engine, filters)
    data = report.as_json()
    total = {"task_id": "(total)", **data["total"]}
    return respond(request, data, [*data["rows"], total], "roi")


@router.get(
    "/reconcile",
    summary="Proxy vs Anthropic's and OpenAI's usage and cost reports, per UTC day and model",
)
async def get_reconcile(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    days: Annotated[int, Query(ge=1, le=3660, description="whole UTC days back from end")] = 30,
    end: Moment | None = None,
    provider: Annotated[
        Literal["anthropic", "openai"] | None, Query(description="one provider (default: both)")
    ] = None,
) -> Response:
    window = reports.trailing(days, end)
    overridden = await reports.company_prices(settings.prices_file)
    providers = reports.RECONCILED_PROVIDERS if provider is None else (provider,)
    found = await reports.reconcile(engine, window.start, window.end, overridden, providers)
    return respond(request, found.as_json(), found.flat_rows(), "reconcile")
