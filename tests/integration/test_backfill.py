"""``tokenmeter backfill claude-code`` on the fixture transcripts (tests/fixtures/
claude-code-transcripts: a session with a thinking + text response written as two lines, a
sub-agent whose response is also replayed in its parent, a ``<synthetic>`` line, an API error
line, a fast-mode line on Opus 4.6, and a resumed session copying earlier lines).

Counted by hand: 16 lines in 3 files; 6 distinct responses (msg_01A, 01B, 01S1, 01S2, 01F, 01C);
4 duplicates (01A's partial line, 01S1's replay in the parent, 01A's two copies in the resumed
session); 1 synthetic, 1 error. Tokens of the kept lines:
input 11+5+100+1200+800+20 = 2136, cache_write_5m 40, cache_write_1h 20+2000 = 2020,
cache_read 300+371+4000 = 4671, output 120+250+1000+300+150+40 = 1860.
The fast line is priced at Opus 4.6's fast rates ($30 / $150): 100 × 30 + 1000 × 150 = $0.153.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest
from sqlalchemy import select

from proxy import claude_logs
from proxy.cli import main
from proxy.store.engine import make_engine, upgrade
from proxy.store.rollup import purge_raw_before
from proxy.store.tables import session_context, usage_events
from proxy.usage import Usage
from tests.conftest import Proxy

FIXTURES = Path(__file__).parent.parent / "fixtures" / "claude-code-transcripts"
TOKENS = Usage(input=2136, cache_write_5m=40, cache_write_1h=2020, cache_read=4671, output=1860)


def _rows(url: str, table: Any = usage_events) -> list[Any]:
    async def read() -> list[Any]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(select(table))).mappings())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _summary(out: str) -> dict[str, int]:
    return {line[:19].strip(): int(line[19:]) for line in out.splitlines()}


def _backfill(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, int]:
    assert main(["backfill", "claude-code", *argv]) == 0
    return _summary(capsys.readouterr().out)


def test_reading_keeps_one_line_per_response_with_the_largest_total() -> None:
    reading = claude_logs.read(claude_logs.transcript_files([FIXTURES]))
    assert (reading.files, reading.lines, len(reading.responses)) == (3, 16, 6)
    assert (reading.duplicates, reading.synthetic, reading.errors) == (4, 1, 1)
    totals = dict.fromkeys(TOKENS.by_kind(), 0)
    for response in reading.responses:
        for kind, n in response.facts.usage.by_kind().items():
            totals[kind] += n
    assert totals == TOKENS.by_kind()
    by_id = {r.message_id: r for r in reading.responses}
    assert by_id["msg_01A"].facts.usage.output == 120
    assert by_id["msg_01S1"].facts.usage.output == 300
    assert by_id["msg_01F"].facts.speed == "fast"
    assert by_id["msg_01C"].git_branch == "main"


def test_default_dirs_follow_claude_config_dir(tmp_path: Path) -> None:
    env = {"CLAUDE_CONFIG_DIR": f"{tmp_path}/a,{tmp_path}/b", "HOME": "/nowhere"}
    assert claude_logs.default_dirs(env) == [tmp_path / "a/projects", tmp_path / "b/projects"]
    home = claude_logs.default_dirs({"HOME": str(tmp_path)})
    assert home == [tmp_path / ".config/claude/projects", tmp_path / ".claude/projects"]


def test_backfill_twice_stores_each_response_once_for_the_named_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/backfill.db"
    upgrade(url)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    first = _backfill(capsys, str(FIXTURES), "--user", "ada", "--team", "core")
    assert first == {
        "files": 3,
        "lines": 16,
        "responses": 6,
        "duplicates skipped": 4,
        "synthetic skipped": 1,
        "errors skipped": 1,
        "already proxied": 0,
        "events written": 6,
        "already backfilled": 0,
    }
    second = _backfill(capsys, str(FIXTURES), "--user", "ada", "--team", "core")
    assert (second["events written"], second["already backfilled"]) == (0, 6)
    rows = _rows(url)
    assert len(rows) == 6
    assert {(r["user"], r["team"], r["attribution_source"]) for r in rows} == {
        ("ada", "core", "backfill")
    }
    assert sum(r["output_tokens"] for r in rows) == TOKENS.output
    assert sum(r["cache_write_1h_tokens"] for r in rows) == TOKENS.cache_write_1h
    fast = next(r for r in rows if r["message_id"] == "msg_01F")
    assert Decimal(fast["cost_usd"]) == Decimal("0.153")
    assert all(r["cost_usd"] is not None for r in rows)
    assert {r["session"] for r in rows} == {
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    }
    places = {(p["session"][:8], p["worktree"], p["branch"]) for p in _rows(url, session_context)}
    assert places == {  # each session's work context: where its latest response ran
        ("11111111", "/home/ada/src/shop", "feature/cart"),
        ("22222222", "/home/ada/src/shop", "main"),
    }


def test_a_response_both_proxied_and_logged_is_counted_once(
    proxy: Proxy,
    claude: anthropic.Anthropic,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = claude.messages.with_raw_response.create(
        model="claude-opus-4-8", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    message = raw.parse()
    line = {
        "type": "assistant",
        "sessionId": "33333333-3333-4333-8333-333333333333",
        "timestamp": "2026-11-27T08:00:00.000Z",
        "requestId": raw.headers["request-id"],
        "message": message.model_dump(mode="json"),
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "s.jsonl").write_text(json.dumps(line) + "\n")
    url = proxy.app.parts.settings.database_url
    _wait_for_rows(url, 1)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    summary = _backfill(capsys, str(logs), "--user", "ada")
    assert (summary["responses"], summary["already proxied"], summary["events written"]) == (
        1,
        1,
        0,
    )
    assert len(_rows(url)) == 1


def _wait_for_rows(url: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(_rows(url)) < n:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _usage(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(["usage", "--by", "user", "--since", "2026-11-01", "--json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else {}, err


async def _purge_before(url: str, cutoff: datetime) -> None:
    engine = make_engine(url)
    try:
        await purge_raw_before(engine, cutoff)
    finally:
        await engine.dispose()


def test_usage_by_source_counts_proxied_and_backfilled_events_apart(
    proxy: Proxy,
    claude: anthropic.Anthropic,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    claude.messages.create(
        model="claude-opus-4-8", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    url = proxy.app.parts.settings.database_url
    _wait_for_rows(url, 1)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    _backfill(capsys, str(FIXTURES), "--user", "ada", "--team", "core")

    totals = {}
    for source in ("proxy", "backfill", None):
        code, data, _ = _usage(capsys, *(["--source", source] if source else []))
        assert code == 0
        assert data["source"] == source or (source is None and data["source"] == "all")
        totals[source] = data["total"]
    assert (totals["proxy"]["requests"], totals["backfill"]["requests"]) == (1, 6)
    assert totals[None]["requests"] == 7
    both = Decimal(totals["proxy"]["cost_usd"]) + Decimal(totals["backfill"]["cost_usd"])
    assert both == Decimal(totals[None]["cost_usd"])
    api = proxy.http.get(
        "/api/v1/usage",
        params={"group_by": "user", "start": "2026-11-01T00:00:00Z", "source": "backfill"},
    ).json()
    assert api["total"] == totals["backfill"]
    assert [row["user"] for row in api["rows"]] == ["ada"]

    # Retention purges the backfilled hours' raw events: a report by source cannot answer for
    # them (the rollups keep no source) and says so; one without a source still can.
    asyncio.run(_purge_before(url, datetime(2026, 11, 21, tzinfo=UTC)))
    code, _, err = _usage(capsys, "--source", "backfill")
    assert code == 2
    assert "raw events before 2026-11-21T09:00:00+00:00 were purged" in err  # the oldest kept
    code, data, _ = _usage(capsys)
    assert (code, data["total"]["requests"]) == (0, 7)
    code, data, _ = _usage(capsys, "--source", "backfill", "--since", "2026-11-21T09:00")
    assert code == 0
    assert 0 < data["total"]["requests"] < 6
    assert main(["usage", "--since", "2026-11-21T09:00", "--source", "proxy"]) == 0
    assert "; proxy events only" in capsys.readouterr().out.splitlines()[0]
