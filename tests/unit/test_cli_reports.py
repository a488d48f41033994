"""The CLI an engineer and finance use: reports, task cost and ROI, people import, prices, reprice.

Each command runs as a user would run it: ``tokenmeter …`` with ``TOKENMETER_DATABASE_URL`` set,
against a SQLite file seeded with tests/seed.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.store.engine import make_engine, upgrade
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from tests.factories import make_event
from tests.seed import PEOPLE_CSV, seed


async def _seed(url: str, with_people: bool) -> None:
    engine = make_engine(url)
    try:
        await seed(engine, with_people=with_people)
    finally:
        await engine.dispose()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    upgrade(url)
    asyncio.run(_seed(url, with_people=False))
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    monkeypatch.setenv("TOKENMETER_USD_PER_CURRENCY", '{"EUR": "1.08"}')
    return url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_task_set_then_show_gives_cost_and_roi(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "task", "set", "T-1", "--hours", "16", "--rate", "150")
    assert (code, out.strip()) == (0, "task T-1: value $2400")
    code, out, _ = _run(capsys, "task", "show", "T-1")
    assert code == 0
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "2000.000000" in total
    assert "8000.000000" in total
    assert out.splitlines()[-1] == (
        "ROI: 1.20x  (16 h x $150/h = $2400 of people's time for $2000.000000 of tokens)"
    )
    code, out, _ = _run(capsys, "task", "show", "T-1", "--json")
    assert json.loads(out)["roi"] == "1.20"


def test_people_import_refuses_a_bad_file_then_report_people(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(PEOPLE_CSV.replace("150000", "150,000"))
    code, _, err = _run(capsys, "people", "import", str(bad))
    assert code == 1
    assert "line 4: more cells than columns" in err
    good = tmp_path / "people.csv"
    good.write_text(PEOPLE_CSV)
    assert _run(capsys, "people", "import", str(good))[1].startswith("imported 5 people records")
    code, out, _ = _run(capsys, "report", "people", "--since", "2026-10-31", "--json")
    assert code == 0
    teams = {t["team"]: t for t in json.loads(out)["teams"]}
    assert teams["core"]["annual_compensation_usd"] == "350000.00"
    assert teams["core"]["spend_usd"] == "3600.000000"


def test_report_people_refuses_unconvertible_pay(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOKENMETER_USD_PER_CURRENCY")
    (tmp_path / "p.csv").write_text(PEOPLE_CSV)
    _run(capsys, "people", "import", str(tmp_path / "p.csv"))
    code, out, err = _run(capsys, "report", "people")
    assert code == 2
    assert "EUR (dee)" in err
    assert out == ""


def test_report_blended_table(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "report", "blended", "--since", "2026-10-31", "--by", "user")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("window 2026-10-31T00:00:00+00:00 .. now")
    assert lines[1].split()[:3] == ["user", "requests", "tokens"]
    ada = next(line.split() for line in lines if line.startswith("ada"))
    assert ada[1:3] == ["3", "3,000,000"]
    assert "75.0%" in ada


def test_prices_show_lists_every_rate_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "prices", "show", "claude-opus-4-7", "--at", "2026-11-01")
    assert code == 0
    assert "cache_write_1h  $10 per MTok" in out
    assert "anthropic claude-opus-4-7 on 2026-11-01" in out.splitlines()[0]
    assert _run(capsys, "prices", "show", "no-such-model")[0] == 1


async def _write_unpriced(url: str) -> None:
    engine = make_engine(url)
    try:
        when = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
        await write_batch(
            engine, [event_to_row(make_event(started_at=when, model="mystery-9", priced=False))]
        )
    finally:
        await engine.dispose()


def test_prices_missing_and_reprice_dry_run(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "prices", "missing")[1].strip() == "every request seen so far had a price"
    asyncio.run(_write_unpriced(database))
    missing = _run(capsys, "prices", "missing")[1].splitlines()
    assert missing[1].split() == [
        "mystery-9",
        "anthropic",
        "1",
        "2026-11-20",
        "09:00",
        "2026-11-20",
        "09:00",
        "no",
    ]
    code, out, _ = _run(capsys, "reprice", "--since", "2026-10-01", "--dry-run")
    assert code == 0
    assert "(dry run, nothing written)" in out
    assert "9 events: 8 repriced (new price version), 8 of them with a different cost" in out
    total = out.splitlines()[-1].split()
    assert total[:2] == ["total", "5099.000000"]  # the seeded test prices, before repricing
    assert total[-2:] == ["1", "1"]  # mystery-9 has no price before or after


async def _seed_window(url: str) -> None:
    from tests.integration.test_reports_window import SEED, _event

    engine = make_engine(url)
    try:
        await write_batch(engine, [event_to_row(_event(*row)) for row in SEED])
    finally:
        await engine.dispose()


@pytest.fixture
def window_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/window.db"
    upgrade(url)
    asyncio.run(_seed_window(url))
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    return url


ODD = ("--since", "2026-11-20T10:37", "--until", "2026-11-20T13:05")


def test_the_same_odd_window_gives_the_same_totals_everywhere(
    window_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    totals = {}
    for argv in (
        ("usage", "--by", "user"),
        ("usage", "--by", "task"),
        ("usage", "--by", "day"),
        ("report", "blended", "--by", "model"),
    ):
        code, out, _ = _run(capsys, *argv, *ODD, "--json")
        data = json.loads(out)
        assert code == 0
        assert (data["start"], data["end"]) == (
            "2026-11-20T10:37:00+00:00",
            "2026-11-20T13:05:00+00:00",
        )
        total = data["total"]
        totals[argv] = (total["requests"], total["cost_usd"], total["unpriced_requests"])
    assert set(totals.values()) == {(6, "0.134440", 2)}  # 4 priced × $0.03361, 2 unpriced
    code, out, _ = _run(capsys, "report", "tasks", *ODD, "--json")
    assert sum(row["requests"] for row in json.loads(out)["rows"]) == 5  # 1 event has no task


def test_tables_mark_unknown_and_partial_dollars(
    window_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "report", "blended", "--by", "model", *ODD)
    lines = out.splitlines()
    assert lines[0] == "window 2026-11-20T10:37:00+00:00 .. 2026-11-20T13:05:00+00:00"
    mystery = next(line.split() for line in lines if line.startswith("mystery-9"))
    assert mystery[5:8] == ["?", "-", "?"]  # cost and sticker: unknown, not $0; no seat traffic
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total[5] == "0.134440*"
    assert total[-2] == "1.031931*"  # $/MTok over priced tokens: not pulled down to 0.687954
    assert lines[-1].startswith("* some requests have no known price")
    code, out, _ = _run(capsys, "task", "show", "T-D")
    total = next(line.split() for line in out.splitlines() if line.startswith("total"))
    assert total[5] == "?"
    assert "ROI: unknown" in out


def test_tables_align_wide_names_and_never_print_a_control_character() -> None:
    from proxy.cli.common import table

    rows = [("user", "cost"), ("中文用户", "1.50"), ("Zoë", "12.00"), ("evil\x1b[2J\u202e", "3")]
    lines = table(rows).splitlines()
    # the escaped name is the widest, 17 columns; 中文用户 takes 8 columns, Zoë 3
    assert lines[0] == "user" + " " * 13 + "   cost"
    assert lines[1] == "中文用户" + " " * 9 + "   1.50"
    assert lines[2] == "Zoë" + " " * 14 + "  12.00"
    assert lines[3] == "evil\\x1b[2J\\u202e" + "      3"
    assert all(line.isprintable() for line in lines)


def test_task_import_is_all_or_nothing_with_line_numbers(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = "Ticket,Estimate Hours,Rate,Value\nT-1,16,150,\nT-2,,,900\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(good + "T-3,lots,150,\nT-4,,,\n")
    code, _, err = _run(capsys, "task", "import", str(bad))
    assert code == 1
    assert "line 4: human_hours 'lots' is not a number" in err
    assert "line 5: give a value, or hours and a rate" in err
    assert _run(capsys, "task", "show", "T-1", "--json")[1].count('"value_usd": null') == 1
    values = tmp_path / "values.csv"
    values.write_text(good.replace("Estimate Hours", "hours"))
    code, out, _ = _run(capsys, "task", "import", str(values))
    assert (code, out.strip()) == (0, f"set the value of 2 task(s) from {values}")
    assert json.loads(_run(capsys, "task", "show", "T-1", "--json")[1])["roi"] == "1.20"
