"""Budgets: set, list and remove them (admin token), and ``/budgets/me`` for the caller's own.

``/budgets/me`` needs no admin token: it answers for whoever the request is attributed to, the
way the proxy attributes provider traffic (``x-tokenmeter-user`` / ``-team`` headers, the key
map), so a Claude Code status line can show spent, limit, percent and reset with the same
headers it already sends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from proxy import reports
from proxy.api.deps import EngineDep, PartsDep, SettingsDep
from proxy.api.params import Amount, Name
from proxy.budgets import Period, Scope, make_budget, time_zone
from proxy.intake import Refusal

router = APIRouter(tags=["budgets"])
mine = APIRouter(tags=["budgets"])


class BudgetIn(BaseModel):
    """A budget to create or change (one per scope, name and period)."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope
    name: Name | None = Field(default=None, description="the user or team; none for org")
    period: Period
    usd: Amount = Field(description="the amount per period, in USD (send it as a string)")
    soft: bool = Field(default=False, description="warn only; hard budgets refuse requests")
    alerts: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(
        default=None, max_length=10, description="alert thresholds in percent (50, 80, 100)"
    )


@router.get("/budgets", summary="Every budget with its period-to-date spend")
async def get_budgets(engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    rows = await reports.budget_status(engine, time_zone(settings.budget_tz), datetime.now(UTC))
    return {"budgets": [row.as_json() for row in rows]}


@router.put("/budgets", summary="Create or change a budget")
async def put_budget(body: BudgetIn, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    alerts = tuple(body.alerts) if body.alerts is not None else None
    budget = make_budget(
        body.scope, body.name, body.period, body.usd, hard=not body.soft, alerts=alerts
    )
    tz, now = time_zone(settings.budget_tz), datetime.now(UTC)
    await reports.set_budget(engine, budget, tz, now)
    rows = await reports.budget_status(engine, tz, now)
    return next(row.as_json() for row in rows if row.budget.key == budget.key)


@router.delete("/budgets/{scope}/{period}", status_code=204, summary="Remove a budget")
async def delete_budget(
    scope: Scope, period: Period, engine: EngineDep, name: Annotated[Name, Query()] = ""
) -> Response:
    if not await reports.remove_budget(engine, (scope.value, name, period.value)):
        raise HTTPException(404, f"no {period.value} budget for {scope.value} {name}".strip())
    return Response(status_code=204)


@mine.get("/budgets/me", summary="The caller's own budgets: spent, limit, percent, resets at")
async def get_my_budgets(request: Request, parts: PartsDep) -> dict[str, Any]:
    try:
        who = await parts.forwarder.caller(list(request.headers.raw))
    except Refusal as refused:
        raise HTTPException(401, refused.message) from None
    tz, now = time_zone(parts.settings.budget_tz), datetime.now(UTC)
    rows = await reports.budget_status(
        parts.engine, tz, now, user=who.user, team=who.team, covering=True
    )
    tightest = max(rows, key=lambda row: row.spent / row.budget.amount_usd, default=None)
    return {
        "user": who.user,
        "team": who.team,
        "budgets": [row.as_json() for row in rows],
        "tightest": None if tightest is None else tightest.as_json(),
    }
