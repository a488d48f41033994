"""``tokenmeter budget set|list|rm|status`` against a real SQLite database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.store.engine import make_engine, upgrade
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import Cost
from tests.factories import make_event


async def _spend(url: str, amount: str, **who: Any) -> None:
    engine = make_engine(url)
    money = Decimal(amount)
    event = make_event(cost=Cost(money, {}, money, "v"), started_at=datetime.now(UTC), **who)
    try:
        await write_batch(engine, [event_to_row(event)])
    finally:
        await engine.dispose()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    upgrade(url)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    return url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_budget_set_status_rm(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_spend(database, "1500", user="ada", team="platform"))
    assert _run(
        capsys, "budget", "set", "--team", "platform", "--period", "month", "--usd", "2000"
    )[1] == ("team platform: monthly $2,000.00 (hard) set\n")
    assert (
        _run(capsys, "budget", "set", "--org", "--period", "day", "--usd", "10", "--soft")[0] == 0
    )
    asyncio.run(_spend(database, "600", user="bob", team="platform"))

    code, out, _ = _run(capsys, "budget", "status")

    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["scope", "name", "period", "limit", "spent", "used", "kind", "resets"]
    assert rows[1][:7] == ["org", "-", "day", "$10.00", "$2,100.00", "21000.0%", "OVER"]
    assert rows[2][:7] == ["team", "platform", "month", "$2,000.00", "$2,100.00", "105.0%", "OVER"]
    assert _run(capsys, "budget", "rm", "--org", "--period", "day")[0] == 0
    assert len(_run(capsys, "budget", "list")[1].splitlines()) == 2
    code, _, err = _run(capsys, "budget", "rm", "--org", "--period", "day")
    assert (code, err) == (1, "tokenmeter: budget rm: no day budget for org\n")
    code, _, err = _run(capsys, "budget", "set", "--period", "day", "--usd", "1")
    assert (code, err) == (2, "tokenmeter: budget: give one of --user USER, --team TEAM or --org\n")
