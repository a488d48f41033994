"""``tokenmeter seats set|import|list`` and ``tokenmeter report seats``, run as a user runs them
against a SQLite file seeded with tests/seats_seed.py (figures computed by hand there)."""

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
from tests.seats_seed import SEATS_CSV, seat_events


async def _seed(url: str) -> None:
    engine = make_engine(url)
    try:
        await write_batch(engine, [event_to_row(e) for e in seat_events()])
    finally:
        await engine.dispose()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/seats.db"
    upgrade(url)
    asyncio.run(_seed(url))
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    return url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _months_since_october() -> str:
    """``--months`` that reaches back to October 2026 (the seeded month) from today."""
    now = datetime.now(UTC)
    return str((now.year - 2026) * 12 + now.month - 10 + 1)


def test_set_import_and_list_seats(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "seats.csv"
    csv_file.write_text(SEATS_CSV)
    assert _run(capsys, "seats", "import", str(csv_file))[:2] == (
        0,
        f"imported 2 seats from {csv_file}\n",
    )
    code, out, _ = _run(capsys, "seats", "set", "carol", "--plan", "pro", "--usd-per-month", "20")
    assert (code, out) == (0, "carol: seat on pro at $20 per month\n")
    code, out, _ = _run(capsys, "seats", "list", "--json")
    listed = {seat["user"]: (seat["plan"], seat["usd_per_month"]) for seat in json.loads(out)}
    assert listed == {"alice": ("max-20x", "200"), "bob": ("max-5x", "100"), "carol": ("pro", "20")}


def test_a_bad_price_is_one_line_not_a_traceback(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "seats", "set", "alice", "--usd-per-month", "two hundred")
    assert code == 2
    assert err.strip().splitlines() == [
        "tokenmeter: seats set: usd_per_month 'two hundred' is not a number (write 200 or 25.50)"
    ]


def test_report_seats_gives_the_break_even_per_person_and_month(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "seats.csv"
    csv_file.write_text(SEATS_CSV)
    _run(capsys, "seats", "import", str(csv_file))
    code, out, _ = _run(capsys, "report", "seats", "--months", _months_since_october())
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == [
        "user", "month", "plan", "seat", "$", "API-equiv", "$", "value/price",
        "seat", "saves", "$", "verdict", "paid", "$",
    ]  # fmt: skip
    alice = next(line for line in lines if line[:2] == ["alice", "2026-10"])
    assert alice[2:] == [
        "max-20x", "200", "350.000000", "1.7500x", "150.000000", "seat", "pays", "off", "0.000000"
    ]  # fmt: skip
    bob = next(line for line in lines if line[:2] == ["bob", "2026-10"])
    assert bob[2:] == [
        "max-5x", "100", "40.000000", "0.4000x", "-60.000000", "API", "cheaper", "25.000000"
    ]  # fmt: skip
