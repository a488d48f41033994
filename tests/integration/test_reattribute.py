"""Key-map attribution after the fact: ``tokenmeter keys fingerprint``, ``usage --by key`` and
``reattribute`` (events and both rollups in one transaction, idempotent), on SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.attribution import KeyOwner, fingerprint
from proxy.cli import main
from proxy.reattribution import reattribute
from proxy.store.rollup import rebuild_rollups
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import UsageEvent
from tests.dbfixtures import (
    daily_rows,
    hourly_summed_by_day,
    rollup_rows,
    session_rollup,
    session_rollup_from_events,
    task_rollups,
    task_rollups_from_events,
)
from tests.factories import make_event

SALT = "tokenmeter-default-salt"
ALICE, BOB = fingerprint("sk-alice", SALT), fingerprint("sk-bob", SALT)
T0 = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)


def _event(
    at: datetime, fp: str | None, source: str, user: str | None, team: str | None
) -> UsageEvent:
    return make_event(
        started_at=at,
        user=user,
        team=team,
        task="T",
        session="s",
        key_fingerprint=fp,
        source=source,
    )


async def _seed(engine: AsyncEngine) -> None:
    events = [
        _event(T0, ALICE, "none", None, None),
        _event(T0 + timedelta(minutes=5), ALICE, "client", None, None),
        _event(T0 + timedelta(hours=1), ALICE, "header", None, "web"),  # header named a team
        _event(T0 + timedelta(days=1), ALICE, "header", "carol", "web"),  # header decided
        _event(T0 + timedelta(days=1), BOB, "none", None, None),  # not in the map
        _event(T0 - timedelta(days=3), ALICE, "none", None, None),  # before --since
    ]
    await write_batch(engine, [event_to_row(e) for e in events])


async def _users(engine: AsyncEngine) -> list[tuple[str | None, str | None, str]]:
    import sqlalchemy as sa

    from proxy.store.tables import usage_events as e

    query = sa.select(e.c.user, e.c.team, e.c.attribution_source).order_by(e.c.ts, e.c.event_id)
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]


async def test_reattribute_moves_events_and_rollups_once(engine: AsyncEngine) -> None:
    await _seed(engine)
    owners = {ALICE: KeyOwner("alice", "core")}
    dry = await reattribute(engine, owners, T0 - timedelta(hours=1), dry_run=True)
    assert (dry.events, dry.changed) == (4, 4)
    result = await reattribute(engine, owners, T0 - timedelta(hours=1))
    assert (result.events, result.changed, result.hours) == (4, 4, 3)
    assert await _users(engine) == [
        (None, None, "none"),  # before --since: left alone
        ("alice", "core", "key_map"),
        ("alice", "core", "key_map"),
        ("alice", "core", "key_map"),  # the provider authenticated the key: headers can't
        ("alice", "core", "key_map"),  # override its owner (a header that named carol too)
        (None, None, "none"),  # bob's key is not in the map
    ]
    hourly, daily = await rollup_rows(engine), await daily_rows(engine)
    assert daily == await hourly_summed_by_day(engine)
    by_task = await task_rollups(engine)
    assert by_task == await task_rollups_from_events(engine)  # moved to alice's task key
    assert await session_rollup(engine) == await session_rollup_from_events(engine)
    assert {row["user"] for row in by_task[0]} == {"", "alice"}
    await rebuild_rollups(engine)  # the rollups from scratch: what they must hold
    assert await rollup_rows(engine) == hourly
    assert await daily_rows(engine) == daily
    again = await reattribute(engine, owners, T0 - timedelta(hours=1))
    assert (again.changed, again.hours) == (0, 0)
    assert await rollup_rows(engine) == hourly


async def test_a_changed_map_moves_key_map_events_to_the_new_owner(engine: AsyncEngine) -> None:
    await _seed(engine)
    await reattribute(engine, {ALICE: KeyOwner("alice", "core")}, T0)
    result = await reattribute(engine, {ALICE: KeyOwner("alicia", None)}, T0)
    assert result.changed == 4  # every event of the mapped key follows the map
    assert (await _users(engine))[1:5] == [("alicia", None, "key_map")] * 4


def test_cli_fingerprint_usage_by_key_and_reattribute(
    tmp_path: Path,
    migrated_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from proxy.store.engine import make_engine

    async def seed() -> None:
        engine = make_engine(migrated_url)
        try:
            await _seed(engine)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", migrated_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-alice\n"))
    assert main(["keys", "fingerprint"]) == 0
    assert capsys.readouterr().out == f"{ALICE}\n"
    keymap = tmp_path / "keys.json"
    keymap.write_text(json.dumps({ALICE: {"user": "alice", "team": "core"}}))
    monkeypatch.setenv("TOKENMETER_KEY_MAP_FILE", str(keymap))
    assert main(["usage", "--by", "key", "--since", "2026-11-01"]) == 0
    out = capsys.readouterr().out.splitlines()[1:]  # after the window line
    assert (out[0].split()[0], out[0].split()[-1]) == ("key", "owner")
    rows = {line.split()[0]: line.split() for line in out[1:-1]}
    assert rows[ALICE][-2:] == ["alice", "(core)"]
    assert rows[BOB][-1] == "-"
    assert out[-1].startswith("1 key(s) without an owner")
    assert main(["reattribute", "--since", "2026-11-20"]) == 0
    printed = capsys.readouterr().out
    assert "4 events of mapped keys: 4 re-attributed in 3 hours" in printed
    assert main(["reattribute", "--since", "2026-11-20"]) == 0
    assert "4 events of mapped keys: 0 re-attributed" in capsys.readouterr().out
    assert main(["usage", "--by", "user", "--since", "2026-11-19"]) == 0
    users = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[2:-1]]
    assert users == [["(none)", "1"], ["alice", "4"]]
