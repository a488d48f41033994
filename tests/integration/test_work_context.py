"""Work context from the real Claude Code CLI: ``tokenmeter claude-code install`` puts the hooks
and status line in its settings; a session in a git repository on a ticket branch, through the
proxy, lands on that repository, branch and ticket in ``tokenmeter usage --by …``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from tests.claude_code import run_claude
from tests.conftest import Proxy


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)  # noqa: S603, S607


def make_repo(where: Path, branch: str, remote: str) -> Path:
    """A throwaway git repository with one commit on ``branch`` and ``remote`` as origin."""
    where.mkdir(parents=True)
    _git(where, "init", "-q", "-b", branch)
    _git(where, "remote", "add", "origin", remote)
    _git(where, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q",
         "--allow-empty", "-m", "start")  # fmt: skip
    return where


def cli(*argv: str) -> tuple[int, str]:
    """``tokenmeter ARGV`` in this process: (exit status, stdout)."""
    out, saved = io.StringIO(), sys.stdout
    sys.stdout = out
    try:
        status = main(list(argv))
    finally:
        sys.stdout = saved
    return status, out.getvalue()


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)
    return found


def test_a_claude_code_session_on_a_ticket_branch_is_reported_by_ticket(
    proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "widgets", "feat/ABC-42-thing", "git@github.com:acme/widgets.git")
    monkeypatch.setenv("HOME", str(home))
    assert cli("claude-code", "install", "--user", "--url", proxy.url)[0] == 0

    done = run_claude(
        "say hi",
        home=home,
        base_url=proxy.url,
        cwd=repo,
        ANTHROPIC_API_KEY="sk-x",
        ANTHROPIC_CUSTOM_HEADERS="x-tokenmeter-user: alice",
    )
    assert done.returncode == 0, done.stderr

    database = str(proxy.app.parts.settings.database_url)

    def ticket_row() -> dict[str, Any] | None:
        status, out = cli("usage", "--by", "ticket", "--json", "--database", database)
        rows = {row["ticket"]: row for row in json.loads(out)["rows"]} if status == 0 else {}
        return rows.get("ABC-42")

    row = wait_for(ticket_row)
    assert row["requests"] >= 1
    assert float(row["cost_usd"]) > 0
    status, out = cli("usage", "--by", "ticket", "--database", database)
    assert "ABC-42" in out
    assert "unattributed" not in out
    _, out = cli("usage", "--by", "repo", "--json", "--database", database)
    assert [r["repo"] for r in json.loads(out)["rows"]] == ["github.com/acme/widgets"]
    _, out = cli("usage", "--by", "branch", "--json", "--database", database)
    assert [r["branch"] for r in json.loads(out)["rows"]] == ["acme/widgets:feat/ABC-42-thing"]

    _, out = cli("usage", "--by", "session", "--json", "--database", database)
    (session,) = [r["session"] for r in json.loads(out)["rows"]]
    line = statusline(proxy.url, {"session_id": session, "workspace": {"current_dir": str(repo)}})
    assert line.startswith("tokenmeter ABC-42 · session $")
    assert "alice this month $" in line


def hook_command(name: str, url: str, given: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The hook client as the installed settings run it, JSON on stdin."""
    return subprocess.run(  # noqa: S603 - this Python, our own module
        [sys.executable, "-m", "proxy.claude_hook", name, "--url", url],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def statusline(url: str, given: dict[str, Any]) -> str:
    """The status line Claude Code would show for ``given`` (its documented stdin JSON)."""
    return hook_command("statusline", url, given).stdout.strip()


def test_the_hook_and_status_line_never_fail_claude_code_when_tokenmeter_is_down(
    dead_url: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r", "main", "https://github.com/acme/widgets.git")
    given = {"session_id": "s-1", "cwd": str(repo), "hook_event_name": "SessionStart"}
    started = time.monotonic()
    done = hook_command("hook", dead_url, given)
    assert (done.returncode, done.stdout) == (0, "")  # SessionStart output would be context
    assert statusline(dead_url, given) == "tokenmeter: not reachable"
    assert hook_command("hook", dead_url, {"not": "claude code"}).returncode == 0
    assert time.monotonic() - started < 10  # three Python start-ups, each under 2 s of work
