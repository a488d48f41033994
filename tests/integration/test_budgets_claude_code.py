"""The real Claude Code CLI against a spent hard cap: it shows the message and does not retry."""

from __future__ import annotations

from pathlib import Path

import anthropic

from tests.claude_code import run_claude
from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.integration.test_budgets import ALICE, _ask, _set, _wait_refreshed
from tests.servers import ServerThread


def test_claude_code_shows_the_spend_limit_and_stops(
    proxy: Proxy,
    claude: anthropic.Anthropic,
    upstream: tuple[FakeAnthropic, ServerThread],
    tmp_path: Path,
) -> None:
    _set(proxy, scope="team", name="platform", period="month", usd="2000")
    _set(proxy, scope="user", name="alice", period="day", usd="0.000001")
    _wait_refreshed(proxy)
    _ask(claude)  # alice's day is spent
    forwarded = len(upstream[0].requests)

    done = run_claude(
        "say hi",
        home=tmp_path / "home",
        base_url=proxy.url,
        ANTHROPIC_API_KEY="sk-ant-test-123",
        ANTHROPIC_CUSTOM_HEADERS="\n".join(f"{k}: {v}" for k, v in ALICE.items()),
    )

    shown = done.stdout + done.stderr
    print(shown)  # Claude Code 2.1.197: "API Error: Request rejected (429) · spend limit reached …"
    assert "spend limit reached (user alice, daily $0.000001; resets " in shown
    assert done.returncode != 0
    assert "Request rejected (429)" in shown
    refused = proxy.metric("tokenmeter_requests_refused_total", reason="spend_limit")
    assert refused >= 1
    print("refused", refused)
    inference = [r for r in upstream[0].requests[forwarded:] if r.path == "/v1/messages"]
    assert inference == []  # nothing metered went upstream
    assert refused <= 3  # one per request Claude Code made, no retry storm
