"""The client side of tokenmeter's Claude Code hooks and status line: standard library only.

Claude Code runs a hook or status line command as a new process, on every session start, every
answer and every status refresh: it must start fast (importing the CLI with its settings,
SQLAlchemy and pydantic takes ~0.5-1 s; this module ~50 ms) and never fail. So
``python -m proxy.claude_hook hook|statusline --url URL`` (what ``tokenmeter claude-code
install`` writes) imports nothing but the standard library; ``tokenmeter claude-code
hook|statusline`` call the same functions.

It reads the JSON Claude Code writes on stdin (hooks: ``session_id``, ``cwd``; the status
line: ``session_id``, ``workspace.current_dir``), asks git in that directory for the
repository (``remote.origin.url``), branch, working tree and pull request (a branch checked
out by ``gh pr checkout`` merges ``refs/pull/N/head``), and posts them to
``POST /api/v1/sessions/{id}/context``. Everything runs under one deadline (``DEADLINE_S``);
any failure (tokenmeter down, not a git repository, bad input) is swallowed and the process
exits 0. The hook prints nothing (SessionStart output would become model context); the status
line prints one line: the ticket or branch, the session's cost and its person's month.

The one setting it needs, the context token, it reads from ``TOKENMETER_CONTEXT_TOKEN`` itself
(``proxy.config`` would cost the start-up time this module exists to save).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

DEADLINE_S = 2.0
STDIN_MAX_BYTES = 1_000_000
TOKEN_VARIABLE = "TOKENMETER_CONTEXT_TOKEN"  # noqa: S105 - a variable name, not a secret
_PR_REF = re.compile(r"^refs/(?:pull|merge-requests)/(\d+)/head$")
_SCP_REMOTE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")  # git@github.com:owner/name.git


def post_context(url: str, token: str | None, stdin: BinaryIO) -> dict[str, Any] | None:
    """Read Claude Code's JSON from ``stdin``, ask git, post; tokenmeter's answer, or None on
    any failure (never raises). All of it within ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    try:
        given = json.loads(stdin.read(STDIN_MAX_BYTES) or b"{}")
        session, body = context_from(given, deadline)
        if session is None:
            return None
        return _post(url, session, body, token, deadline)
    except Exception:  # a hook must never fail Claude Code
        return None


def context_from(given: Any, deadline: float) -> tuple[str | None, dict[str, Any]]:
    """(session id, context body) from Claude Code's stdin JSON and git in its directory."""
    if not isinstance(given, dict) or not isinstance(given.get("session_id"), str):
        return None, {}
    workspace = given.get("workspace")
    workspace = workspace if isinstance(workspace, dict) else {}
    where = workspace.get("current_dir") or given.get("cwd")
    if not isinstance(where, str) or not where:
        return given["session_id"], {}
    return given["session_id"], git_context(Path(where), deadline)


def git_context(where: Path, deadline: float) -> dict[str, Any]:
    """Repository, branch, working tree and pull request of the git checkout at ``where``."""
    top = _git(where, deadline, "rev-parse", "--show-toplevel", "--abbrev-ref", "HEAD")
    if top is None:
        return {}
    worktree, _, branch = top.partition("\n")
    body: dict[str, Any] = {"worktree": worktree}
    if branch and branch != "HEAD":  # HEAD: detached, no branch
        body["branch"] = branch
        merge = _git(where, deadline, "config", "--get", f"branch.{branch}.merge") or ""
        if found := _PR_REF.match(merge):
            body["pr"] = int(found.group(1))
    remote = _git(where, deadline, "config", "--get", "remote.origin.url")
    if remote and (repo := parse_remote(remote)):
        body |= dict(zip(("repo_host", "repo_owner", "repo_name"), repo, strict=True))
    return body


def _git(where: Path, deadline: float, *args: str) -> str | None:
    left = deadline - time.monotonic()
    git = shutil.which("git")
    if git is None or left <= 0:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - git with fixed arguments
            [git, "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=left,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _post(
    url: str, session: str, body: dict[str, Any], token: str | None, deadline: float
) -> dict[str, Any] | None:
    target = f"{url.rstrip('/')}/api/v1/sessions/{quote(session, safe='')}/context"
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL the user configured
        target, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    left = max(deadline - time.monotonic(), 0.05)
    with urllib.request.urlopen(request, timeout=left) as response:  # noqa: S310 - see above
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def status_text(answer: dict[str, Any] | None) -> str:
    """The status line: what the session works on, its cost, its person's month."""
    if answer is None:
        return "tokenmeter: not reachable"
    work = answer.get("ticket") or answer.get("branch") or "no work context"
    parts = [f"tokenmeter {work}"]
    if (cost := answer.get("session_cost_usd")) is not None:
        parts.append(f"session ${cost}")
    if (month := answer.get("month_spend_usd")) is not None:
        parts.append(f"{answer.get('user')} this month ${month}")
    return " · ".join(parts)


def parse_remote(url: str) -> tuple[str, str, str] | None:
    """(host, owner, name) of a git remote URL (https, ssh, or ``git@host:owner/name``); the
    owner keeps any subgroups (``group/sub``). Credentials in the URL are dropped. None when
    the URL names no owner and repository."""
    url = url.strip()
    scp = None if "://" in url else _SCP_REMOTE.match(url)
    if scp:
        host, path = scp.group(1), scp.group(2)
    else:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git")
    owner, _, name = path.rpartition("/")
    if not host or not owner or not name:
        return None
    return host.lower(), owner, name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.claude_hook")
    parser.add_argument("command", choices=("hook", "statusline"))
    parser.add_argument("--url", required=True, help="tokenmeter's URL")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return 0  # never fail Claude Code, not even on a bad command line
    answer = post_context(args.url, os.environ.get(TOKEN_VARIABLE) or None, sys.stdin.buffer)
    if args.command == "statusline":
        print(status_text(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
