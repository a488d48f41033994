"""Tokens and dollars per user, team, model, provider, task, session or day over a time range."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from proxy import reports
from proxy.api.params import Moment, Name

router = APIRouter(tags=["usage"])


@router.get("/usage", summary="Usage grouped by user, team, model, provider, task, session or day")
async def get_usage(
    request: Request,
    group_by: Annotated[str, Query(description="one of " + ", ".join(reports.GROUPS))] = "user",
    start: Moment | None = None,
    end: Moment | None = None,
    user: Name | None = None,
    team: Name | None = None,
    model: Name | None = None,
) -> dict[str, Any]:
    filters = reports.Filters(start, end, user, team, model)
    try:
        rows = await reports.usage(request.app.state.parts.engine, group_by, filters)
    except reports.ReportError as exc:
        raise HTTPException(400, str(exc)) from exc
    return {
        "group_by": group_by,
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "rows": [{group_by: key, **totals.as_json()} for key, totals in rows],
        "total": reports.total_of(rows).as_json(),
    }
