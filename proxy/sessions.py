"""Work context: the repository, branch, working tree, pull request and ticket of a session.

Claude Code knows what a session works on. Its hooks and status line run
``proxy/claude_code.sh`` (installed by ``tokenmeter claude-code install``), which posts Claude
Code's stdin JSON as it is and what git says of the directory Claude Code runs it in to
``POST /api/v1/claude-code/context``; ``from_claude_code`` turns that into a session id and a
``WorkContext`` (other clients post JSON to ``POST /api/v1/sessions/{id}/context``), and
``save_context`` stores it. One row per session id in ``session_context``; reports join it to
events by ``session`` at read time, so the write path never looks it up. ``status_text`` is the
status line, rendered here so the client stays a few lines of shell.

Contract: every field is optional and bounded (``WorkContext.check``); a field left out (None)
keeps what the session already has, so a status line that knows less than the SessionStart hook
never erases it. The ticket is the first match of ``TOKENMETER_TICKET_PATTERN`` in the branch
name (``feat/ABC-42-thing`` → ``ABC-42``) unless given; nothing else is guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import text
from proxy.store.rollup import dialect_insert
from proxy.store.tables import session_context

SESSION = re.compile(r"^[A-Za-z0-9._@+:=-]{1,128}$")  # what attribution keeps as a session
PR_MAX = 10**9
_PR_REF = re.compile(r"^refs/(?:pull|merge-requests)/(\d+)/head$")
_SCP_REMOTE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")  # git@github.com:owner/name.git
_EVERY = {"day": "daily", "week": "weekly", "month": "monthly"}


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


# --- from Claude Code ----------------------------------------------------------------------


def from_claude_code(
    claude: str, *, worktree: str = "", branch: str = "", merge: str = "", remote: str = ""
) -> tuple[str, WorkContext]:
    """(session id, context) from what ``proxy/claude_code.sh`` posts: Claude Code's stdin JSON
    (``claude``; a hook's and the status line's both carry ``session_id``) and git's answers in
    the session's directory: ``git rev-parse --show-toplevel`` (``worktree``), the branch
    (``HEAD`` when detached: none), ``branch.<name>.merge`` (``refs/pull/N/head`` after ``gh pr
    checkout``: pull request N) and ``remote.origin.url`` (host, owner, name). When git names no
    repository or pull request, the status line's own ``workspace.repo`` and ``pr.number`` (Claude
    Code 2.1+) fill in. ``ContextError`` when there is no session id."""
    try:
        given = json.loads(claude)
    except ValueError:
        raise ContextError("claude: not Claude Code's JSON") from None
    session = given.get("session_id") if isinstance(given, dict) else None
    if not isinstance(session, str):
        raise ContextError("claude: no session_id")
    repo = parse_remote(remote) if remote else None
    repo = repo or _claude_repo(given)
    found = _PR_REF.match(merge.strip())
    pr = int(found.group(1)) if found else _claude_pr(given)
    branch = branch.strip()
    context = WorkContext(
        repo_host=repo[0] if repo else None,
        repo_owner=repo[1] if repo else None,
        repo_name=repo[2] if repo else None,
        branch=branch if branch and branch != "HEAD" else None,
        worktree=worktree.strip() or None,
        pr=pr,
    )
    return check_session(session), context


def _claude_repo(given: dict[str, Any]) -> tuple[str, str, str] | None:
    workspace = given.get("workspace")
    repo = workspace.get("repo") if isinstance(workspace, dict) else None
    if not isinstance(repo, dict):
        return None
    parts = tuple(repo.get(k) for k in ("host", "owner", "name"))
    if all(isinstance(p, str) and p for p in parts):
        return str(parts[0]).lower(), str(parts[1]), str(parts[2])
    return None


def _claude_pr(given: dict[str, Any]) -> int | None:
    pr = given.get("pr")
    number = pr.get("number") if isinstance(pr, dict) else None
    return number if isinstance(number, int) and 0 < number < PR_MAX else None


def parse_remote(url: str) -> tuple[str, str, str] | None:
    """(host, owner, name) of a git remote URL (https, ssh, or ``git@host:owner/name``); the
    owner keeps any subgroups (``group/sub``). Credentials in the URL are dropped. None when
    the URL names no owner and repository."""
    url = url.strip()
    scp = None if "://" in url else _SCP_REMOTE.match(url)
    if scp:
        host, path = scp.group(1), scp.group(2)
    else:
        try:
            parts = urlsplit(url)
            host, path = parts.hostname or "", parts.path
        except ValueError:  # https://[::1/x: not a URL
            return None
    path = path.strip("/").removesuffix(".git")
    owner, _, name = path.rpartition("/")
    if not host or not owner or not name:
        return None
    return host.lower(), owner, name


def status_text(context: WorkContext, spend: dict[str, Any]) -> str:
    """The status line: what the session works on, its cost, its person's month, and the
    tightest budget covering them (``reports.session_spend``'s answer) when there is one:
    ``tokenmeter ABC-42 · session $0.0421 · alice this month $12.80 · user alice budget $37.20
    left (74.4%), resets 2026-12-01 00:00 UTC``."""
    parts = [f"tokenmeter {context.ticket or context.branch or 'no work context'}"]
    if (cost := spend.get("session_cost_usd")) is not None:
        parts.append(f"session {_dollars(cost)}")
    if (month := spend.get("month_spend_usd")) is not None:
        parts.append(f"{spend.get('user')} this month {_dollars(month)}")
    if budget := spend.get("budget"):
        limit, spent = Decimal(budget["limit_usd"]), Decimal(budget["spent_usd"])
        left = max(limit - spent, Decimal(0))
        share = (left / limit * 100).quantize(Decimal("0.1"))
        whose = " ".join(
            p for p in (budget["scope"], budget["name"], _EVERY.get(budget["period"])) if p
        )
        parts.append(f"{whose} budget {_dollars(left)} left ({share}%), resets {budget['resets']}")
    return " · ".join(parts)


def _dollars(amount: str | Decimal) -> str:
    """``$12.80``; below a dollar four places (``$0.0421``), so a new session is not $0.00."""
    value = Decimal(amount)
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"
