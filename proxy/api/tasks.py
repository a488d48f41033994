"""Tasks: one task's tokens, dollars and ROI; the task list; setting what a task was worth."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from proxy import reports
from proxy.api.deps import EngineDep, FiltersDep
from proxy.api.params import Amount, Name, Text
from proxy.api.tabular import respond
from proxy.tasks import update_task

router = APIRouter(tags=["tasks"])


class TaskPatch(BaseModel):
    """Fields to set; send null to clear one, leave one out to keep it."""

    model_config = ConfigDict(extra="forbid")

    title: Text | None = None
    human_hours: Amount | None = None
    hourly_rate_usd: Amount | None = None
    value_usd: Amount | None = None


@router.get("/tasks", summary="Tasks with their cost and ROI, sorted by cost, roi or recent")
async def get_tasks(
    request: Request,
    engine: EngineDep,
    filters: FiltersDep,
    sort: Annotated[str, Query(description="cost | roi | recent")] = "cost",
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = 100,
) -> Response:
    rows = await reports.list_tasks(engine, filters, sort, limit)
    data = [row.as_json() for row in rows]
    answer = {**filters.window_json(), "sort": sort, "rows": data}
    return respond(request, answer, data, "tasks")


@router.get("/tasks/{task_id:path}", summary="One task's tokens, dollars, blended $/MTok and ROI")
async def get_task(task_id: Name, engine: EngineDep) -> dict[str, Any]:
    view = await reports.task_view(engine, task_id)
    if view is None:
        raise HTTPException(404, f"no usage recorded for task {task_id!r}")
    return view.as_json()


@router.patch(
    "/tasks/{task_id:path}", summary="Set a task's title, human hours, hourly rate or value"
)
async def patch_task(task_id: Name, patch: TaskPatch, engine: EngineDep) -> dict[str, Any]:
    record = await update_task(engine, task_id, patch.model_dump(exclude_unset=True))
    view = await reports.task_view(engine, task_id)
    if view is None:  # a value entered before the task's first request
        return {"task_id": task_id, **record.as_json(), "roi": None}
    return view.as_json()
