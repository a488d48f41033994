"""Rows the database refuses are quarantined, listed, fixed and replayed; never dropped.

A row is genuinely bad here: 10^19 output tokens is beyond a BIGINT (PostgreSQL: SQLSTATE 22003)
and beyond what SQLite can bind, and a NULL provider breaks NOT NULL (23502). The good rows of
the same batch are written; the bad ones wait in ``quarantine.jsonl`` for an operator, who
lists them with ``tokenmeter db quarantine list``, corrects one in the file and replays.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.store.engine import make_engine
from proxy.store.quarantine import Quarantine
from proxy.store.recorder import Recorder
from proxy.store.spool import Spool
from proxy.usage import Usage, UsageEvent
from tests.dbfixtures import raw_totals, rollup_totals
from tests.factories import make_event
from tests.ledger import recorded


def _bad_events() -> tuple[UsageEvent, UsageEvent]:
    huge = make_event(usage=Usage(input=10, output=10**19), cost=None, priced=False)
    huge.facts.message_id = "msg_huge"
    no_provider = make_event()
    no_provider.provider = None  # type: ignore[assignment]  # a bug upstream: NOT NULL violated
    no_provider.facts.message_id = "msg_no_provider"
    return huge, no_provider


async def _record(url: str, spool: Path, events: list[UsageEvent]) -> int:
    engine = make_engine(url)
    recorder = Recorder(engine, Spool(spool), batch_size=50, flush_interval_s=0.02)
    await recorder.start()
    for event in events:
        recorder.submit(event)
    await recorder.stop()
    await engine.dispose()
    return len(events)


def _fix_in_file(path: Path, message_id: str, output_tokens: int) -> None:
    """What an operator does with an editor: correct one value of one quarantined line."""
    fixed = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["message_id"] == message_id:
            entry["output_tokens"] = output_tokens
        fixed.append(json.dumps(entry))
    path.write_text("\n".join(fixed) + "\n")


def test_refused_rows_are_quarantined_listed_fixed_and_replayed(
    migrated_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spool = tmp_path / "spool"
    good = [make_event() for _ in range(6)]
    for index, event in enumerate(good):
        event.facts.message_id = f"msg_good_{index}"
    huge, no_provider = _bad_events()
    asyncio.run(_record(migrated_url, spool, [*good[:3], huge, *good[3:5], no_provider, good[5]]))

    stored = asyncio.run(recorded(migrated_url))
    assert set(stored) == {e.facts.message_id for e in good}  # the rest of the batch went in
    entries = Quarantine(spool).entries()
    assert [e.row["message_id"] for e in entries] == ["msg_huge", "msg_no_provider"]
    codes = [entry.reason["code"] for entry in entries]
    assert codes[0] == "22003"  # numeric value out of range (SQLite: cannot bind it)
    assert codes[1] in {"23502", "sqlite:1299"}  # NOT NULL

    monkeypatch.setenv("TOKENMETER_DATABASE_URL", migrated_url)
    monkeypatch.setenv("TOKENMETER_SPOOL_DIR", str(spool))
    assert main(["db", "quarantine", "list"]) == 0
    listing = capsys.readouterr().out
    assert huge.event_id in listing
    assert "22003" in listing
    assert no_provider.event_id in listing

    _fix_in_file(spool / "quarantine.jsonl", "msg_huge", 1234)
    assert main(["db", "quarantine", "replay"]) == 1  # one still refused: not all clear
    assert "1 event(s) written to the database; 1 still in quarantine" in capsys.readouterr().out
    stored = asyncio.run(recorded(migrated_url))
    assert stored["msg_huge"] == (1, (10, 0, 1234))
    (left,) = Quarantine(spool).entries()
    assert left.row["event_id"] == no_provider.event_id

    assert main(["db", "quarantine", "list", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["row"]["message_id"] == "msg_no_provider"

    async def consistent() -> None:
        engine = make_engine(migrated_url)
        assert await rollup_totals(engine) == await raw_totals(engine)
        await engine.dispose()

    asyncio.run(consistent())
