"""``tokenmeter claude-code install`` merges into Claude Code's settings and never clobbers;
the hook client reads git remotes and ticket names the way developers write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.claude_hook import parse_remote, status_text
from proxy.cli import main
from proxy.cli.claude_code import merge_settings
from proxy.sessions import WorkContext, ticket_of

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


def test_install_keeps_other_hooks_and_settings_and_is_idempotent() -> None:
    theirs = {"type": "command", "command": "echo hi"}
    current = {"model": "opus", "hooks": {"SessionStart": [{"hooks": [theirs]}]}}
    once, kept = merge_settings(current, "py -m proxy.claude_hook", URL)
    twice, _ = merge_settings(once, "py -m proxy.claude_hook", URL)
    assert once == twice
    assert not kept
    assert once["model"] == "opus"
    assert once["hooks"]["SessionStart"][0] == {"hooks": [theirs]}
    assert len(once["hooks"]["SessionStart"]) == 2
    assert once["hooks"]["Stop"][0]["hooks"][0]["command"] == (
        f"py -m proxy.claude_hook hook --url {URL}"
    )
    assert once["statusLine"]["command"] == f"py -m proxy.claude_hook statusline --url {URL}"


def test_install_keeps_someone_elses_status_line_unless_told() -> None:
    current = {"statusLine": {"type": "command", "command": "~/.claude/mine.sh"}}
    merged, kept = merge_settings(current, "py -m proxy.claude_hook", URL)
    assert kept
    assert merged["statusLine"] == current["statusLine"]
    replaced, _ = merge_settings(current, "c", URL, replace_statusline=True)
    assert "statusline" in replaced["statusLine"]["command"]


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
    assert status_text(None) == "tokenmeter: not reachable"
    answer = {"ticket": "ABC-42", "session_cost_usd": "0.0123", "user": "alice"}
    assert status_text(answer | {"month_spend_usd": "4.5"}) == (
        "tokenmeter ABC-42 · session $0.0123 · alice this month $4.5"
    )
    assert status_text({"branch": "main"}) == "tokenmeter main"
