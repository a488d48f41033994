"""Work context: the repository, branch, working tree, pull request and ticket of a session.

Claude Code knows what a session works on; its hooks and status line (``proxy.claude_hook``)
read it from Claude Code's stdin JSON and git, and post it to
``POST /api/v1/sessions/{id}/context``, which calls ``save_context``. One row per session id
in ``session_context``; reports join it to events by ``session`` at read time, so the write
path never looks it up.

Contract: every field is optional and bounded (``WorkContext.check``); a field left out (None)
keeps what the session already has, so a status line that knows less than the SessionStart hook
never erases it. The ticket is the first match of ``TOKENMETER_TICKET_PATTERN`` in the branch
name (``feat/ABC-42-thing`` → ``ABC-42``) unless given; nothing else is guessed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import text
from proxy.store.rollup import dialect_insert
from proxy.store.tables import session_context

SESSION = re.compile(r"^[A-Za-z0-9._@+:=-]{1,128}$")  # what attribution keeps as a session
PR_MAX = 10**9


class ContextError(ValueError):
    """A session id or a context field that cannot be right (too long, control characters)."""


@dataclass(frozen=True, slots=True)
class WorkContext:
    """What a session works on; None: not known."""

    repo_host: str | None = None
    repo_owner: str | None = None
    repo_name: str | None = None
    branch: str | None = None
    worktree: str | None = None
    pr: int | None = None
    ticket: str | None = None

    @property
    def repo(self) -> str | None:
        """``host/owner/name`` (the parts known), or None."""
        parts = [p for p in (self.repo_host, self.repo_owner, self.repo_name) if p]
        return "/".join(parts) or None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "repo": self.repo}

    def check(self) -> None:
        """Raise ``ContextError`` for a field no repository, branch or path has."""
        for name, value in asdict(self).items():
            if isinstance(value, str) and (wrong := text.problem(value, text.TEXT_MAX_CHARS)):
                raise ContextError(f"{name} {wrong}")
        if self.pr is not None and not 0 < self.pr < PR_MAX:
            raise ContextError(f"pr must be a pull request number, got {self.pr}")

    def with_ticket(self, pattern: str) -> WorkContext:
        """This context with its ticket from the branch name when it has none."""
        if self.ticket or not self.branch:
            return self
        return replace(self, ticket=ticket_of(self.branch, pattern))


def ticket_of(branch: str, pattern: str) -> str | None:
    """The first match of ``pattern`` in ``branch`` (``feat/ABC-42-x`` → ``ABC-42``), or None."""
    found = re.search(pattern, branch)
    return found.group(0) if found else None


def check_session(session: str) -> str:
    """``session`` if it is a session id as the proxy records one, else ``ContextError``."""
    if not SESSION.match(session):
        raise ContextError("session id must be 1-128 letters, digits or ._@+:=-")
    return session


async def save_context(
    engine: AsyncEngine, session: str, context: WorkContext, now: datetime | None = None
) -> WorkContext:
    """Upsert ``session``'s context: the fields given replace, the others stay; returns the
    stored context."""
    check_session(session)
    context.check()
    values = {"session": session, **asdict(context), "updated_at": now or datetime.now(UTC)}
    table = session_context
    async with engine.begin() as conn:
        insert = dialect_insert(conn, table).values(values)
        update: dict[str, Any] = {
            name: sa.func.coalesce(insert.excluded[name], table.c[name]) for name in asdict(context)
        }
        update["updated_at"] = insert.excluded.updated_at
        await conn.execute(insert.on_conflict_do_update(index_elements=["session"], set_=update))
    return await context_of(engine, session) or context


async def context_of(engine: AsyncEngine, session: str) -> WorkContext | None:
    """The stored context of ``session``, or None."""
    names = list(WorkContext.__dataclass_fields__)
    query = sa.select(*(session_context.c[n] for n in names)).where(
        session_context.c.session == session
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return None if row is None else WorkContext(**row)
