"""A session's work context (repository, branch, working tree, PR, ticket), posted by
``tokenmeter claude-code hook``/``statusline``; guarded by ``auth.require_context_caller``.

The answer is the context as stored (the ticket derived from the branch with
``TOKENMETER_TICKET_PATTERN`` when none was sent) and the session's spend so far, which the
status line shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from proxy import reports
from proxy.api.deps import EngineDep, SettingsDep
from proxy.sessions import PR_MAX, SESSION, WorkContext, save_context
from proxy.text import CONTROL_FREE, NAME_MAX_CHARS, TEXT_MAX_CHARS

router = APIRouter(tags=["sessions"])

Label = Annotated[str, StringConstraints(max_length=NAME_MAX_CHARS, pattern=CONTROL_FREE)]
PathText = Annotated[str, StringConstraints(max_length=TEXT_MAX_CHARS, pattern=CONTROL_FREE)]
SessionId = Annotated[str, Path(max_length=128, pattern=SESSION.pattern)]


class ContextBody(BaseModel):
    """What a session works on; a field left out or null keeps the session's current value."""

    model_config = ConfigDict(extra="forbid")

    repo_host: Label | None = None
    repo_owner: Label | None = None
    repo_name: Label | None = None
    branch: Label | None = None
    worktree: PathText | None = None
    pr: Annotated[int, Field(gt=0, lt=PR_MAX)] | None = None
    ticket: Label | None = None


@router.post("/sessions/{session_id}/context", summary="Set the work context of a session")
async def post_context(
    session_id: SessionId, body: ContextBody, engine: EngineDep, settings: SettingsDep
) -> dict[str, Any]:
    context = WorkContext(**body.model_dump()).with_ticket(settings.ticket_pattern)
    stored = await save_context(engine, session_id, context)
    spend = await reports.session_spend(engine, session_id)
    return {"session": session_id, **stored.as_json(), **spend}
