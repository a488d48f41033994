"""Tasks: one task's tokens, dollars and ROI; the task list; setting what a task was worth."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from proxy import reports
from proxy.api.params import Moment
from proxy.api.tabular import respond
from proxy.tasks import TaskRecordError, update_task

router = APIRouter(tags=["tasks"])


class TaskPatch(BaseModel):
    """Fields to set; send null to clear one, leave one out to keep it."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    human_hours: Decimal | None = Field(default=None, ge=0)
    hourly_rate_usd: Decimal | None = Field(default=None, ge=0)
    value_usd: Decimal | None = Field(default=None, ge=0)


@router.get("/tasks", summary="Tasks with their cost and ROI, sorted by cost, roi or recent")
async def get_tasks(
    request: Request,
    user: str | None = None,
    team: str | None = None,
    start: Moment | None = None,
    end: Moment | None = None,
    sort: Annotated[str, Query(description="cost | roi | recent")] = "cost",
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = 100,
) -> Response:
    filters = reports.Filters(start, end, user, team)
    try:
        rows = await reports.list_tasks(request.app.state.parts.engine, filters, sort, limit)
    except reports.ReportError as exc:
        raise HTTPException(400, str(exc)) from exc
    data = [row.as_json() for row in rows]
    return respond(request, {"sort": sort, "rows": data}, data, "tasks")


@router.get("/tasks/{task_id:path}", summary="One task's tokens, dollars, blended $/MTok and ROI")
async def get_task(task_id: str, request: Request) -> dict[str, Any]:
    view = await reports.task_view(request.app.state.parts.engine, task_id)
    if view is None:
        raise HTTPException(404, f"no usage recorded for task {task_id!r}")
    return view.as_json()


@router.patch(
    "/tasks/{task_id:path}", summary="Set a task's title, human hours, hourly rate or value"
)
async def patch_task(task_id: str, patch: TaskPatch, request: Request) -> dict[str, Any]:
    engine = request.app.state.parts.engine
    try:
        record = await update_task(engine, task_id, patch.model_dump(exclude_unset=True))
    except TaskRecordError as exc:
        raise HTTPException(400, str(exc)) from exc
    view = await reports.task_view(engine, task_id)
    if view is None:  # a value entered before the task's first request
        return {"task_id": task_id, **record.as_json(), "roi": None}
    return view.as_json()
