"""A session's work context (repository, branch, working tree, PR, ticket); guarded by
``auth.require_context_caller``.

- ``POST /api/v1/claude-code/context``: what ``proxy/claude_code.sh`` (Claude Code's hooks and
  status line) posts, form-encoded: ``claude`` (Claude Code's stdin JSON, as it is) and git's
  ``worktree``, ``branch``, ``merge`` and ``remote``. The answer is the status line, as text.
- ``POST /api/v1/sessions/{id}/context``: the same context as JSON, for other clients; the answer
  is the context as stored and the session's spend and tightest budget.

Either way the ticket is derived from the branch with ``TOKENMETER_TICKET_PATTERN`` when none
was sent."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from proxy import reports
from proxy.api.deps import EngineDep, SettingsDep
from proxy.budgets import time_zone
from proxy.sessions import (
    PR_MAX,
    SESSION,
    ContextError,
    WorkContext,
    from_claude_code,
    save_context,
    status_text,
)
from proxy.text import CONTROL_FREE, NAME_MAX_CHARS, TEXT_MAX_CHARS

router = APIRouter(tags=["sessions"])

Label = Annotated[str, StringConstraints(max_length=NAME_MAX_CHARS, pattern=CONTROL_FREE)]
PathText = Annotated[str, StringConstraints(max_length=TEXT_MAX_CHARS, pattern=CONTROL_FREE)]
SessionId = Annotated[str, Path(max_length=128, pattern=SESSION.pattern)]
FORM_MAX_BYTES = 256 * 1024  # Claude Code's status line JSON is a few kB
GIT_FIELDS = ("worktree", "branch", "merge", "remote")


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
    spend = await reports.session_spend(engine, session_id, time_zone(settings.budget_tz))
    return {"session": session_id, **stored.as_json(), **spend}


_FORM = {
    "type": "object",
    "required": ["claude"],
    "properties": {
        "claude": {"type": "string", "description": "Claude Code's stdin JSON (session_id)"},
        "worktree": {"type": "string", "description": "git rev-parse --show-toplevel"},
        "branch": {"type": "string", "description": "git rev-parse --abbrev-ref HEAD"},
        "merge": {"type": "string", "description": "git config branch.<branch>.merge"},
        "remote": {"type": "string", "description": "git config remote.origin.url"},
    },
}


@router.post(
    "/claude-code/context",
    summary="Set a Claude Code session's context from its hook or status line; the status line",
    response_class=PlainTextResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM}},
        }
    },
)
async def post_claude_code(request: Request, engine: EngineDep, settings: SettingsDep) -> str:
    form = await _form(request)
    session, context = from_claude_code(
        form.get("claude", ""), **{name: form.get(name, "") for name in GIT_FIELDS}
    )
    stored = await save_context(engine, session, context.with_ticket(settings.ticket_pattern))
    spend = await reports.session_spend(engine, session, time_zone(settings.budget_tz))
    return status_text(stored, spend) + "\n"


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body (``curl --data-urlencode``): each field's first value."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise HTTPException(413, f"at most {FORM_MAX_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContextError(f"not a UTF-8 form: {exc}") from None
    return {name: values[0] for name, values in fields.items()}
