"""Tokens and dollars per user, team, model, provider, task, session, key or day over a time
window; JSON, or CSV with ``?format=csv`` / ``Accept: text/csv`` like every report.

The answer echoes the window it counted (``start``, ``end``): every grouping counts exactly the
events in it (``reports.usage``). ``source`` narrows it to proxied or backfilled events."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from proxy import reports
from proxy.api.deps import EngineDep, ModelFiltersDep
from proxy.api.tabular import respond

router = APIRouter(tags=["usage"])


@router.get("/usage", summary="Usage grouped by user, team, model, provider, task, session or day")
async def get_usage(
    request: Request,
    engine: EngineDep,
    filters: ModelFiltersDep,
    group_by: Annotated[str, Query(description="one of " + ", ".join(reports.GROUPS))] = "user",
    source: Annotated[
        Literal["proxy", "backfill"] | None,
        Query(
            description="only events the proxy metered, or only those backfilled from "
            "Claude Code's transcripts (default: both); reads raw events"
        ),
    ] = None,
) -> Response:
    if source is not None:
        filters = await reports.resolve(engine, replace(filters, source=source))
    rows = await reports.usage(engine, group_by, filters)
    data = [{group_by: key, **totals.as_json()} for key, totals in rows]
    total = reports.total_of(rows).as_json()
    body = {
        "group_by": group_by,
        **filters.window_json(),
        "source": source or "all",
        "rows": data,
        "total": total,
    }
    return respond(request, body, [*data, {group_by: "(total)", **total}], f"usage-by-{group_by}")
