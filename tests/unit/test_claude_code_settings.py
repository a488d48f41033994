"""``tokenmeter claude-code install`` merges into Claude Code's settings and never clobbers; the
proxy reads what the client posts (Claude Code's JSON, git's answers), git remotes and ticket
names the way developers write them, and renders the status line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.cli.claude_code import merge_settings
from proxy.sessions import (
    ContextError,
    WorkContext,
    from_claude_code,
    parse_remote,
    status_text,
    ticket_of,
)

URL = "http://127.0.0.1:8080"
PATTERN = r"[A-Z][A-Z0-9]+-\d+"


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("git@github.com:acme/widgets.git", ("github.com", "acme", "widgets")),
        ("https://github.com/acme/widgets", ("github.com", "acme", "widgets")),
        ("https://user:secret@GitHub.com/acme/widgets.git", ("github.com", "acme", "widgets")),
        ("ssh://git@gitlab.example.com:2222/g/sub/app.git", ("gitlab.example.com", "g/sub", "app")),
        ("/srv/git/widgets.git", None),
        ("git@github.com:widgets.git", None),
        ("https://[::1/x/y", None),
    ],
)  # fmt: skip
def test_git_remotes_name_host_owner_and_repository(
    url: str, repo: tuple[str, str, str] | None
) -> None:
    assert parse_remote(url) == repo


@pytest.mark.parametrize(
    ("branch", "ticket"),
    [
        ("feat/ABC-42-thing", "ABC-42"),
        ("feature/JIRA-1234-billing", "JIRA-1234"),
        ("main", None),
        ("fix/abc-42", None),
    ],
)
def test_the_ticket_is_the_first_match_in_the_branch(branch: str, ticket: str | None) -> None:
    assert ticket_of(branch, PATTERN) == ticket
    assert WorkContext(branch=branch).with_ticket(PATTERN).ticket == ticket
    assert WorkContext(branch=branch, ticket="X-1").with_ticket(PATTERN).ticket == "X-1"


SH = "sh /home/a/.claude/tokenmeter-claude-code.sh"


def test_install_keeps_other_hooks_and_settings_and_is_idempotent() -> None:
    theirs = {"type": "command", "command": "echo hi"}
    old = {"type": "command", "command": "/venv/bin/python -m proxy.claude_hook hook --url u"}
    current = {
        "model": "opus",
        "hooks": {"SessionStart": [{"hooks": [theirs]}], "Stop": [{"hooks": [old]}]},
        "statusLine": {"type": "command", "command": "py -m proxy.claude_hook statusline --url u"},
    }
    once, kept = merge_settings(current, SH, URL)
    twice, _ = merge_settings(once, SH, URL)
    assert once == twice
    assert not kept  # the Python client of earlier releases is ours: replaced
    assert once["model"] == "opus"
    assert once["hooks"]["SessionStart"][0] == {"hooks": [theirs]}
    assert len(once["hooks"]["SessionStart"]) == 2
    assert once["hooks"]["Stop"] == [
        {"hooks": [{"type": "command", "command": f"{SH} hook {URL}", "timeout": 5}]}
    ]
    assert once["statusLine"] == {"type": "command", "command": f"{SH} statusline {URL}"}


def test_install_keeps_someone_elses_status_line_unless_told() -> None:
    current = {"statusLine": {"type": "command", "command": "~/.claude/mine.sh"}}
    merged, kept = merge_settings(current, SH, URL)
    assert kept
    assert merged["statusLine"] == current["statusLine"]
    replaced, _ = merge_settings(current, SH, URL, replace_statusline=True)
    assert replaced["statusLine"]["command"] == f"{SH} statusline {URL}"


def test_install_writes_the_client_beside_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["claude-code", "install", "--user", "--url", URL]) == 0
    script = tmp_path / "home/.claude/tokenmeter-claude-code.sh"
    assert script.read_text().startswith("#!/bin/sh")
    user = json.loads((tmp_path / "home/.claude/settings.json").read_text())
    assert user["statusLine"]["command"] == f"sh {script} statusline {URL}"
    assert main(["claude-code", "install", "--project", "--url", URL]) == 0
    assert (tmp_path / ".claude/tokenmeter-claude-code.sh").read_text() == script.read_text()
    project = json.loads((tmp_path / ".claude/settings.json").read_text())
    assert project["hooks"]["SessionStart"][0]["hooks"][0]["command"] == (
        f'sh "$CLAUDE_PROJECT_DIR"/.claude/tokenmeter-claude-code.sh hook {URL}'
    )


def test_install_backs_up_and_refuses_a_file_that_is_not_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text('{"model": "opus"}')
    assert main(["claude-code", "install", "--project", "--url", URL]) == 0
    assert json.loads((tmp_path / ".claude/settings.json.bak").read_text()) == {"model": "opus"}
    assert json.loads(settings.read_text())["model"] == "opus"
    settings.write_text("{not json")
    assert main(["claude-code", "install", "--project", "--url", URL]) == 1
    assert settings.read_text() == "{not json"
    assert "is not JSON" in capsys.readouterr().err


def test_the_status_line_says_what_it_knows() -> None:
    spend = {"session_cost_usd": "0.012300", "user": "alice", "month_spend_usd": "1234.500000"}
    assert status_text(WorkContext(ticket="ABC-42", branch="feat/ABC-42"), spend) == (
        "tokenmeter ABC-42 · session $0.0123 · alice this month $1,234.50"
    )
    assert status_text(WorkContext(branch="main"), {}) == "tokenmeter main"
    assert status_text(WorkContext(), {"budget": None}) == "tokenmeter no work context"


def test_the_status_line_shows_the_tightest_budgets_money_and_share_left_and_reset() -> None:
    budget = {
        "scope": "team",
        "name": "platform",
        "period": "month",
        "limit_usd": "50.0000000000",
        "spent_usd": "12.8000000000",
        "resets": "2026-12-01 00:00 UTC",
    }
    assert status_text(WorkContext(branch="main"), {"budget": budget}) == (
        "tokenmeter main · team platform monthly budget $37.20 left (74.4%), "
        "resets 2026-12-01 00:00 UTC"
    )
    over = budget | {"scope": "org", "name": None, "period": "day", "spent_usd": "51"}
    assert status_text(WorkContext(branch="main"), {"budget": over}).endswith(
        "org daily budget $0.0000 left (0.0%), resets 2026-12-01 00:00 UTC"
    )


STATUS_INPUT = {  # Claude Code 2.1.197's status line JSON (recorded), trimmed
    "session_id": "6a5747bb-5c16-4d6a-aa6e-54c061a16bff",
    "cwd": "/src/widgets",
    "model": {"id": "claude-opus-4-8[1m]", "display_name": "Opus 4.8 (1M context)"},
    "workspace": {
        "current_dir": "/src/widgets",
        "project_dir": "/src/widgets",
        "added_dirs": [],
        "repo": {"host": "github.com", "owner": "acme", "name": "widgets"},
    },
    "cost": {"total_cost_usd": 0.00083},
}


def test_the_posted_context_comes_from_git_first_then_claude_codes_own_fields() -> None:
    claude = json.dumps(STATUS_INPUT | {"pr": {"number": 9, "url": "https://x/9"}})
    session, context = from_claude_code(
        claude,
        worktree="/src/widgets\n",
        branch="feat/ABC-42",
        merge="refs/pull/123/head",
        remote="git@gitlab.example.com:g/sub/app.git",
    )
    assert session == STATUS_INPUT["session_id"]
    assert context == WorkContext(
        repo_host="gitlab.example.com",
        repo_owner="g/sub",
        repo_name="app",
        branch="feat/ABC-42",
        worktree="/src/widgets",
        pr=123,
    )
    _, fallback = from_claude_code(claude, branch="HEAD", merge="refs/heads/main")
    assert (fallback.repo, fallback.branch, fallback.pr) == ("github.com/acme/widgets", None, 9)
    hook = {"session_id": "s-1", "cwd": "/x", "hook_event_name": "SessionStart"}
    assert from_claude_code(json.dumps(hook)) == ("s-1", WorkContext())


@pytest.mark.parametrize(
    "claude", ["", "not json", "[]", '{"cwd": "/x"}', '{"session_id": 7}', '{"session_id": "a b"}']
)
def test_the_posted_json_must_name_a_session(claude: str) -> None:
    with pytest.raises(ContextError):
        from_claude_code(claude)
