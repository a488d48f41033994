"""``tokenmeter backfill claude-code``: Claude Code's transcripts as usage events.

Why it exists: usage from before the proxy was installed, or that went around it, is in Claude
Code's own logs (``claude_logs`` reads them, once per response). Each response becomes one
``UsageEvent`` priced by the same ``Pricer`` as proxied traffic, attributed to the person named
(``--user``, ``--team``, ``--task``), the transcript's session and ``agent`` ``claude-code``,
with attribution source ``backfill``, and written by the store's one write path. Where each
session ran (the ``gitBranch`` and ``cwd`` of its latest response) becomes its work context
(``proxy.sessions``: branch, working tree, the ticket in the branch name), the same record Claude
Code's hooks write, so ``usage --by branch|ticket`` covers backfilled sessions too.

Contract:
- never counted twice: a response whose message id or upstream request id an event of the
  proxy already carries is skipped (``already_proxied``); the event id is derived from the
  message id and request id, and the store is idempotent by event id, so a second run writes
  nothing (``already_backfilled``).
- the summary says what was read and why each line was or was not counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import claude_logs
from proxy.claude_logs import LoggedResponse
from proxy.pricing import Pricer
from proxy.sessions import ContextError, WorkContext, save_context
from proxy.store.recorded import recorded_ids
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import BACKFILL_SOURCE, Attribution, Status, UsageEvent

SOURCE = BACKFILL_SOURCE
AGENT = "claude-code"
WRITE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Payer:
    """Who the backfilled usage is billed to."""

    user: str | None = None
    team: str | None = None
    task: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    files: int
    lines: int
    responses: int  # distinct API responses found
    duplicates: int
    synthetic: int
    errors: int
    already_proxied: int
    written: int  # new events stored by this run
    already_backfilled: int  # events an earlier run stored

    def lines_out(self) -> list[str]:
        return [
            f"files              {self.files}",
            f"lines              {self.lines}",
            f"responses          {self.responses}",
            f"duplicates skipped {self.duplicates}",
            f"synthetic skipped  {self.synthetic}",
            f"errors skipped     {self.errors}",
            f"already proxied    {self.already_proxied}",
            f"events written     {self.written}",
            f"already backfilled {self.already_backfilled}",
        ]


def event_id(response: LoggedResponse) -> str:
    """The same id for the same response on every run."""
    key = f"{AGENT}\0{response.message_id}\0{response.request_id}"
    if response.message_id is None and response.request_id is None:
        key += f"\0{response.session}\0{response.at.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def to_event(response: LoggedResponse, payer: Payer) -> UsageEvent:
    who = Attribution(
        user=payer.user,
        team=payer.team,
        task=payer.task,
        session=response.session,
        agent=AGENT,
        source=SOURCE,
    )
    return UsageEvent(
        provider="anthropic",
        method="POST",
        path="/v1/messages",
        started_at=response.at,
        attribution=who,
        facts=response.facts,
        status=Status.OK,
        http_status=200,
        stream=False,
        duration_ms=0.0,
        request_id=response.request_id,
        event_id=event_id(response),
    )


async def backfill(
    engine: AsyncEngine,
    pricer: Pricer,
    paths: Sequence[Path],
    payer: Payer,
    ticket_pattern: str,
) -> Summary:
    """Read the transcripts under ``paths``, skip what the proxy recorded, store the rest."""
    reading = claude_logs.read(claude_logs.transcript_files(paths))
    fresh = await _not_proxied(engine, reading.responses)
    events = [to_event(response, payer) for response in fresh]
    rows = [event_to_row(event.with_cost(pricer.price(event))) for event in events]
    for session, context in places(reading.responses).items():
        try:
            await save_context(engine, session, context.with_ticket(ticket_pattern))
        except ContextError:  # a session id or path no hook could post either: no context
            continue
    written = 0
    for start in range(0, len(rows), WRITE_CHUNK):
        written += await write_batch(engine, rows[start : start + WRITE_CHUNK])
    return Summary(
        files=reading.files,
        lines=reading.lines,
        responses=len(reading.responses),
        duplicates=reading.duplicates,
        synthetic=reading.synthetic,
        errors=reading.errors,
        already_proxied=len(reading.responses) - len(fresh),
        written=written,
        already_backfilled=len(rows) - written,
    )


def places(responses: list[LoggedResponse]) -> dict[str, WorkContext]:
    """Where each session ran: the branch and working directory of its latest response."""
    latest: dict[str, LoggedResponse] = {}
    for r in responses:
        if r.session is None or (r.cwd is None and r.git_branch is None):
            continue
        if r.session not in latest or r.at >= latest[r.session].at:
            latest[r.session] = r
    return {
        session: WorkContext(branch=r.git_branch or None, worktree=r.cwd or None)
        for session, r in sorted(latest.items())
    }


async def _not_proxied(
    engine: AsyncEngine, responses: list[LoggedResponse]
) -> list[LoggedResponse]:
    message_ids = [r.message_id for r in responses if r.message_id]
    request_ids = [r.request_id for r in responses if r.request_id]
    seen = await recorded_ids(engine, message_ids, request_ids, besides=SOURCE)
    return [r for r in responses if r.message_id not in seen and r.request_id not in seen]
