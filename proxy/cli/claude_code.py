"""``tokenmeter claude-code``: tie Claude Code sessions to the work they are part of.

- ``install [--user|--project]`` merges into Claude Code's ``settings.json`` (a copy of the old
  file kept beside it as ``settings.json.bak``) a SessionStart and a Stop hook running
  ``claude-code hook``, and a status line running ``claude-code statusline``, both pointed at
  this proxy (``--url``). It never clobbers: other hooks stay, our own entries are replaced (so
  installing twice is the same as once), and a status line someone else set is kept unless
  ``--statusline`` is given.
- ``hook`` and ``statusline`` read the JSON Claude Code writes on stdin (``session_id``,
  ``cwd``, the status line's ``workspace.current_dir``/``git_worktree``), ask git for the
  repository (``remote.origin.url``), branch, working tree and pull request (a branch
  checked out by ``gh pr checkout`` merges ``refs/pull/N/head``), and post them to
  ``POST /api/v1/sessions/{id}/context``. Everything runs under one deadline (``DEADLINE_S``);
  any failure (tokenmeter down, not a git repository, bad input) is swallowed: these commands
  always exit 0 and never hold Claude Code up. The hook prints nothing (SessionStart output
  would become model context); the status line prints one line: the ticket or branch, the
  session's cost and its person's spend this month.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from proxy.cli.common import CliError
from proxy.config import Settings
from proxy.sessions import parse_remote

DEADLINE_S = 2.0
STDIN_MAX_BYTES = 1_000_000
HOOK_EVENTS = ("SessionStart", "Stop")
_PR_REF = re.compile(r"^refs/(?:pull|merge-requests)/(\d+)/head$")


def add_commands(sub: Any) -> None:
    group = sub.add_parser("claude-code", help="connect Claude Code sessions to their work")
    commands = group.add_subparsers(title="claude-code commands", metavar="COMMAND")
    install = commands.add_parser("install", help="add tokenmeter's hooks and status line")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="~/.claude/settings.json (default)")
    where.add_argument("--project", action="store_true", help="./.claude/settings.json")
    install.add_argument("--url", help="tokenmeter's URL (default: http://HOST:PORT)")
    install.add_argument(
        "--statusline", action="store_true", help="replace a status line set by something else"
    )
    install.set_defaults(handler=_install)
    for name, handler, text in (
        ("hook", _hook, "a Claude Code hook: post the session's work context"),
        ("statusline", _statusline, "a Claude Code status line: post context, print cost"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--url", required=True, help="tokenmeter's URL")
        command.set_defaults(handler=handler)


# --- hook and status line --------------------------------------------------------------------


def _hook(args: argparse.Namespace, settings: Settings) -> int:
    _post_context(args.url, settings, time.monotonic() + DEADLINE_S)
    return 0


def _statusline(args: argparse.Namespace, settings: Settings) -> int:
    answer = _post_context(args.url, settings, time.monotonic() + DEADLINE_S)
    print(status_text(answer))
    return 0


def _post_context(url: str, settings: Settings, deadline: float) -> dict[str, Any] | None:
    """Read stdin, ask git, post; the answer, or None on any failure (never raises)."""
    try:
        given = json.loads(sys.stdin.buffer.read(STDIN_MAX_BYTES) or b"{}")
        session, body = context_from(given, deadline)
        if session is None:
            return None
        return _post(url, session, body, settings.context_token, deadline)
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


# --- install ---------------------------------------------------------------------------------


def _install(args: argparse.Namespace, settings: Settings) -> int:
    base = Path.cwd() if args.project else Path.home()
    path = base / ".claude" / "settings.json"
    url = args.url or f"http://{settings.host}:{settings.port}"
    command = own_command()
    current = _read_settings(path)
    merged, kept = merge_settings(current, command, url, replace_statusline=args.statusline)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
        print(f"kept the previous settings as {path.name}.bak")
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"installed tokenmeter's hooks ({', '.join(HOOK_EVENTS)}) in {path}, posting to {url}")
    if kept:
        print("kept the existing status line (use --statusline to replace it)")
    return 0


def own_command() -> str:
    """How Claude Code should run this tokenmeter: its ``tokenmeter`` executable when that is
    what runs now, else this Python with ``-m proxy.cli``."""
    runner = Path(sys.argv[0])
    if runner.name == "tokenmeter" and runner.exists():
        return shlex.quote(str(runner.resolve()))
    return f"{shlex.quote(sys.executable)} -m proxy.cli"


def _read_settings(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text() or "{}")
    except (OSError, ValueError) as exc:
        raise CliError(f"{path} is not JSON ({exc}): fix it first, nothing was changed") from exc
    if not isinstance(found, dict):
        raise CliError(f"{path} is not a JSON object: fix it first, nothing was changed")
    return found


def merge_settings(
    current: dict[str, Any], command: str, url: str, *, replace_statusline: bool = False
) -> tuple[dict[str, Any], bool]:
    """``current`` with tokenmeter's hooks and status line; True when a status line set by
    something else was kept."""
    merged = json.loads(json.dumps(current))
    hooks = merged.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise CliError("settings.json: hooks is not an object: fix it first, nothing was changed")
    quoted_url = shlex.quote(url)
    for event in HOOK_EVENTS:
        entries = [e for e in hooks.get(event, []) if not _is_ours(e)]
        ours = {"type": "command", "command": f"{command} claude-code hook --url {quoted_url}"}
        hooks[event] = [*entries, {"hooks": [{**ours, "timeout": 5}]}]
    line = merged.get("statusLine")
    kept = isinstance(line, dict) and not _is_ours(line) and not replace_statusline
    if not kept:
        statusline = f"{command} claude-code statusline --url {quoted_url}"
        merged["statusLine"] = {"type": "command", "command": statusline}
    return merged, kept


def _is_ours(entry: Any) -> bool:
    return "claude-code hook" in json.dumps(entry) or "claude-code statusline" in json.dumps(entry)
