"""Work context from the real Claude Code CLI: ``tokenmeter claude-code install`` puts the hooks
and status line in its settings; a session in a git repository on a ticket branch, through the
proxy, lands on that repository, branch and ticket in ``tokenmeter usage --by …``, and the
status line Claude Code draws shows its cost, its person's month and the budget left."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anthropic
import pytest

import proxy as package
from proxy.cli import main
from tests.claude_code import ClaudeTty, run_claude
from tests.conftest import Proxy
from tests.servers import ServerThread

CLIENT = Path(package.__file__).parent / "claude_code.sh"


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
    print(f"$ tokenmeter usage --by ticket\n{out}")  # shown with pytest -s
    assert "ABC-42" in out
    assert "unattributed" not in out
    _, out = cli("usage", "--by", "repo", "--json", "--database", database)
    assert [r["repo"] for r in json.loads(out)["rows"]] == ["github.com/acme/widgets"]
    _, out = cli("usage", "--by", "branch", "--json", "--database", database)
    assert [r["branch"] for r in json.loads(out)["rows"]] == ["acme/widgets:feat/ABC-42-thing"]

    _, out = cli("usage", "--by", "session", "--json", "--database", database)
    (session,) = [r["session"] for r in json.loads(out)["rows"]]
    line = statusline(proxy.url, {"session_id": session, "cwd": str(repo)}, repo)
    print(f"status line: {line}")
    assert line.startswith("tokenmeter ABC-42 · session $")
    assert "alice this month $" in line
    assert "budget" not in line  # none covers alice


@pytest.mark.parametrize("scope", ["--user", "--project"])
def test_claude_code_draws_the_status_line_with_cost_month_and_budget_left(
    make_proxy: Callable[..., Proxy],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scope: str,
) -> None:
    proxy = make_proxy(database_url=db_url)
    budget = {"scope": "team", "name": "platform", "period": "month", "usd": "50"}
    assert proxy.http.put("/api/v1/budgets", json=budget).status_code == 200
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "widgets", "feat/ABC-42-thing", "git@github.com:acme/widgets.git")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(repo)  # --project: ./.claude/, the script named by $CLAUDE_PROJECT_DIR
    assert cli("claude-code", "install", scope, "--url", proxy.url)[0] == 0
    headers = "x-tokenmeter-user: alice\nx-tokenmeter-team: platform"
    claude = ClaudeTty(
        "say hi",
        home=home,
        base_url=proxy.url,
        cwd=repo,
        ANTHROPIC_AUTH_TOKEN="sk-x",
        ANTHROPIC_CUSTOM_HEADERS=headers,
    )
    try:
        claude.wait_for("tokenmeter ABC-42")  # drawn at start, before any request
        wait_for(
            lambda: proxy.http.get("/api/v1/usage", params={"group_by": "user"}).json()["rows"]
        )
        claude.type("say hi again\r")  # the next answer redraws it, the first one recorded
        shown = claude.wait_for(r"tokenmeter ABC-42 · session \$[^\n]*? UTC").group()
    finally:
        claude.close()
    print(f"status line drawn by Claude Code: {shown}")
    resets = proxy.http.get("/api/v1/budgets").json()["budgets"][0]["resets"]
    assert re.fullmatch(
        r"tokenmeter ABC-42 · session \$0\.\d{4} · alice this month \$0\.\d{4} · team platform "
        rf"monthly budget \$(49\.9\d|50\.00) left \((99\.\d|100\.0)%\), resets {resets}",
        shown,
    ), shown


def statusline(url: str, given: dict[str, Any], cwd: Path, **env: str) -> str:
    """The status line the installed client prints for ``given`` (Claude Code's stdin JSON),
    run in ``cwd`` as Claude Code runs it (in the session's directory)."""
    return client("statusline", url, given, cwd, **env).stdout.strip()


def client(
    name: str, url: str, given: dict[str, Any], cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """The hook and status line client as the installed settings run it, JSON on stdin."""
    return subprocess.run(  # noqa: S603 - our own script
        ["sh", str(CLIENT), name, url],  # noqa: S607 - sh from PATH, as Claude Code runs it
        input=json.dumps(given),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        timeout=30,
        check=True,
    )


def test_the_hook_and_status_line_never_fail_claude_code_when_tokenmeter_is_down(
    dead_url: str, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r", "main", "https://github.com/acme/widgets.git")
    given = {"session_id": "s-1", "cwd": str(repo), "hook_event_name": "SessionStart"}
    done = client("hook", dead_url, given, repo)
    assert (done.returncode, done.stdout) == (0, "")  # SessionStart output would be context
    assert statusline(dead_url, given, repo) == "tokenmeter: not reachable"
    assert client("hook", dead_url, {"not": "claude code"}, tmp_path).returncode == 0


def test_a_refused_status_line_says_so_and_a_hook_stays_silent(
    make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = make_proxy(context_token="ctx-" + "k" * 40)
    wrong = {"cwd": str(tmp_path)}  # no session id: 422
    assert client("hook", proxy.url, wrong, tmp_path).stdout == ""
    assert statusline(proxy.url, wrong, tmp_path) == "tokenmeter: refused (HTTP 422)"
    given = {"session_id": "s-1", "cwd": str(tmp_path)}
    assert statusline(proxy.url, given, tmp_path) == "tokenmeter no work context"


class Capture:
    """An ASGI app that keeps each request's body and answers a fixed status line."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, list[str]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(parse_qs(body.decode()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tokenmeter ok\n"})


def test_the_client_posts_claude_codes_json_and_git_without_credentials(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", "feat/X-1", "https://bob:s3cret@github.com/acme/w.git")
    _git(repo, "config", "branch.feat/X-1.merge", "refs/pull/7/head")
    given = {"session_id": "s-1", "cwd": str(repo)}
    capture = Capture()
    with ServerThread(capture) as server:
        line = statusline(server.url, given, repo / ".", TOKENMETER_CONTEXT_TOKEN="t")
    assert line == "tokenmeter ok"
    (posted,) = capture.bodies
    assert {name: value[0] for name, value in posted.items()} == {
        "claude": json.dumps(given),
        "worktree": str(repo.resolve()),
        "branch": "feat/X-1",
        "merge": "refs/pull/7/head",
        "remote": "https://github.com/acme/w.git",
    }


def _ask(claude: anthropic.Anthropic, session: str) -> None:
    claude.messages.create(
        model="claude-opus-4-8",
        max_tokens=9,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Claude-Code-Session-Id": session},
    )


def test_spend_without_context_is_unattributed_never_spread(
    make_proxy: Callable[..., Proxy], db_url: str
) -> None:
    proxy = make_proxy(database_url=db_url)
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-t", max_retries=0)
    _ask(claude, "s-ctx")
    _ask(claude, "s-bare")
    proxy.task("s-bare", 1)
    proxy.task("s-ctx", 1)
    body = {"repo_host": "github.com", "repo_owner": "acme", "repo_name": "w", "pr": 7}
    posted = proxy.http.post("/api/v1/sessions/s-ctx/context", json=body | {"branch": "x/OPS-9"})
    assert posted.status_code == 200, posted.text
    assert posted.json()["ticket"] == "OPS-9"
    assert posted.json()["session_cost_usd"] is not None
    rows = proxy.http.get("/api/v1/usage", params={"group_by": "pr"}).json()["rows"]
    assert [r["pr"] for r in rows] == ["acme/w#7", "unattributed"]
    assert rows[0]["cost_usd"] == rows[1]["cost_usd"]  # one request each, the same answer


def test_a_field_left_out_keeps_what_the_session_has(proxy: Proxy) -> None:
    first = {"branch": "feat/ABC-1", "worktree": "/src/w"}
    assert proxy.http.post("/api/v1/sessions/s1/context", json=first).status_code == 200
    later = proxy.http.post("/api/v1/sessions/s1/context", json={"branch": "feat/ABC-2"}).json()
    assert (later["branch"], later["worktree"], later["ticket"]) == (
        "feat/ABC-2",
        "/src/w",
        "ABC-2",  # the ticket follows the branch
    )


@pytest.mark.parametrize(
    ("session", "body"),
    [
        ("s1", {"branch": "x" * 257}),
        ("s1", {"branch": "evil\x1b[2J"}),
        ("s1", {"pr": -1}),
        ("s1", {"what": "else"}),
        ("s" * 129, {}),
        ("a b", {}),
    ],
)
def test_context_is_bounded_and_validated(proxy: Proxy, session: str, body: dict[str, Any]) -> None:
    answer = proxy.http.post(f"/api/v1/sessions/{session}/context", json=body)
    assert answer.status_code == 422, answer.text


def test_off_loopback_context_needs_the_context_token(make_proxy: Callable[..., Proxy]) -> None:
    relayed = {"x-forwarded-for": "203.0.113.9"}  # a reverse proxy relaying a remote caller
    open_proxy = make_proxy()
    assert open_proxy.http.post("/api/v1/sessions/s/context", json={}).status_code == 200
    answer = open_proxy.http.post("/api/v1/sessions/s/context", json={}, headers=relayed)
    assert answer.status_code == 403
    token = "ctx-" + "k" * 40
    guarded = make_proxy(context_token=token)
    answer = guarded.http.post("/api/v1/sessions/s/context", json={}, headers=relayed)
    assert answer.status_code == 401
    bearer = relayed | {"authorization": f"Bearer {token}"}
    answer = guarded.http.post("/api/v1/sessions/s/context", json={}, headers=bearer)
    assert answer.status_code == 200
    assert guarded.http.get("/api/v1/usage", headers=bearer).status_code == 403  # context only


def test_a_ticket_branch_is_the_task_across_sessions_unless_a_header_names_one(
    make_proxy: Callable[..., Proxy], db_url: str
) -> None:
    proxy = make_proxy(database_url=db_url)
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-t", max_retries=0)
    for session in ("s-a", "s-b"):
        _ask(claude, session)
        proxy.http.post(f"/api/v1/sessions/{session}/context", json={"branch": "feat/ABC-42-x"})
    claude.messages.create(
        model="claude-opus-4-8",
        max_tokens=9,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Claude-Code-Session-Id": "s-a", "x-tokenmeter-task": "OTHER-1"},
    )
    assert proxy.task("OTHER-1", 1)["sessions"] == ["s-a"]
    task = proxy.task("ABC-42", 2)
    assert task["sessions"] == ["s-a", "s-b"]
    listed = proxy.http.get("/api/v1/tasks").json()["rows"]
    assert sorted(r["task_id"] for r in listed) == ["ABC-42", "OTHER-1"]
    assert proxy.http.get("/api/v1/tasks/s-a").status_code == 404  # the session is no task now


def test_pr_show_gives_a_pull_requests_cost_sessions_people_and_models(
    make_proxy: Callable[..., Proxy], db_url: str
) -> None:
    proxy = make_proxy(database_url=db_url)
    claude = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-t", max_retries=0)
    for session, user in (("s-1", "ann"), ("s-2", "bob")):
        claude.messages.create(
            model="claude-opus-4-8",
            max_tokens=9,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Claude-Code-Session-Id": session, "x-tokenmeter-user": user},
        )
        proxy.task(session, 1)
        body = {"repo_host": "github.com", "repo_owner": "acme", "repo_name": "w", "pr": 12}
        proxy.http.post(f"/api/v1/sessions/{session}/context", json=body)
    database = str(proxy.app.parts.settings.database_url)
    status, out = cli("pr", "show", "acme/w#12", "--json", "--database", database)
    assert status == 0
    shown = json.loads(out)
    assert (shown["requests"], shown["sessions"], shown["users"]) == (
        2,
        ["s-1", "s-2"],
        ["ann", "bob"],
    )
    assert list(shown["by_model"]) == ["claude-opus-4-8"]
    assert float(shown["cost_usd"]) > 0
    status, out = cli("pr", "show", "acme/w#12", "--database", database)
    assert out.startswith("pr acme/w#12: 2 requests in 2 session(s), users ann, bob")
    assert cli("pr", "show", "acme/w#13", "--database", database)[0] == 1


def test_the_client_reads_a_branch_with_no_commit_and_none_when_detached(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    _git(tmp_path, "init", "-q", "-b", "feat/X-2", str(fresh))
    detached = make_repo(tmp_path / "d", "main", "git@github.com:acme/d.git")
    _git(detached, "checkout", "-q", "--detach")
    capture = Capture()
    with ServerThread(capture) as server:
        for repo in (fresh, detached, tmp_path):  # the last: no repository at all
            statusline(server.url, {"session_id": "s-1"}, repo)
    posted = [{name: value[0] for name, value in body.items()} for body in capture.bodies]
    assert posted == [
        {"claude": '{"session_id": "s-1"}', "worktree": str(fresh.resolve()), "branch": "feat/X-2"},
        {
            "claude": '{"session_id": "s-1"}',
            "worktree": str(detached.resolve()),
            "remote": "git@github.com:acme/d.git",
        },
        {"claude": '{"session_id": "s-1"}'},
    ]  # empty fields are left out by parse_qs
