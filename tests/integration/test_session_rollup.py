"""The session rollup (``session_daily``) on SQLite and PostgreSQL: equal to the raw events
summed per day and session key after live writes, a replayed batch, a rebuild, a purge; and
``usage --by repo|branch|pr|ticket``, which reads it, answers exactly what raw events joined to
``session_context`` answer, context saved after the events counting at once. Repricing and
re-attribution keep it right too (``test_reprice``, ``test_reattribute``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import sum_columns, totals_of
from proxy.reports.usage import UNATTRIBUTED, WORK_GROUPS, usage, work_key
from proxy.reports.window import WITH_CONTEXT, Filters, conditions
from proxy.sessions import WorkContext, save_context
from proxy.store.engine import make_engine, upgrade
from proxy.store.rollup import purge_raw_before, rebuild_rollups
from proxy.store.rows import Row, event_to_row
from proxy.store.tables import session_daily, usage_events
from proxy.store.writes import write_batch
from proxy.usage import UsageEvent
from tests.dbfixtures import session_rollup, session_rollup_from_events
from tests.factories import WORK_MODELS, WORK_START, work_events

T0 = WORK_START
MODELS = WORK_MODELS
# (task, session): a header's task; the session as its task (no header); no task; no session.
WORK = (("T-1", "s-1"), ("T-2", "s-2"), ("s-2", "s-2"), ("s-3", "s-3"), (None, "s-4"), (None, None))


def _events(n: int = 300, seed: int = 5) -> list[UsageEvent]:
    return work_events(WORK, n, seed)


def _rows(events: list[UsageEvent]) -> list[Row]:
    return [event_to_row(event) for event in events]


async def test_the_session_rollup_is_the_events_summed_and_kept_through_rebuild_and_purge(
    engine: AsyncEngine,
) -> None:
    rows = _rows(_events())
    assert await write_batch(engine, rows[:200]) == 200
    assert await write_batch(engine, rows[150:]) == 100  # a replayed spool segment overlaps
    assert await write_batch(engine, rows) == 0
    live = await session_rollup(engine)
    assert live == await session_rollup_from_events(engine)
    assert sum(row["requests"] for row in live) == 300
    assert {row["session"] for row in live} == {"s-1", "s-2", "s-3", "s-4", ""}
    async with engine.begin() as conn:
        await conn.execute(sa.delete(session_daily))
    await rebuild_rollups(engine)
    assert await session_rollup(engine) == live
    # Retention cuts into a day: its session rows keep the purged hours through any rebuild.
    await purge_raw_before(engine, T0 + timedelta(days=3, hours=10))
    await rebuild_rollups(engine)
    assert await session_rollup(engine) == live


async def _raw_by_work(engine: AsyncEngine, group_by: str, f: Filters) -> dict[str, Any]:
    """Per work unit over raw events joined to ``session_context`` (the report before the
    session rollup)."""
    key = work_key(group_by)
    query = (
        sa.select(key, *sum_columns(usage_events))
        .select_from(WITH_CONTEXT)
        .where(*conditions(usage_events, f))
        .group_by(key)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {UNATTRIBUTED if r[0] is None else str(r[0]): totals_of(r, 1).as_json() for r in rows}


def _windows() -> list[Filters]:
    mid = T0 + timedelta(days=2, hours=7, minutes=41, seconds=3)
    return [
        Filters(),
        Filters(T0, T0 + timedelta(days=10)),  # whole days over a month's end
        Filters(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        Filters(mid, mid + timedelta(days=4, hours=9)),  # partial days at both edges
        Filters(mid, mid + timedelta(hours=5)),  # inside one day
        Filters(T0 + timedelta(days=1), mid),  # a whole day, then a partial one
        Filters(end=mid),
        Filters(mid, None, user="ada"),
        Filters(T0, T0 + timedelta(days=9), team="core", model=MODELS[1]),
        Filters(mid, None, source="proxy"),  # by source: raw events
    ]


async def test_usage_by_work_unit_is_the_raw_events_with_context_joined_at_read_time(
    engine: AsyncEngine,
) -> None:
    await write_batch(engine, _rows(_events()))
    # Context arrives after the events; s-4 has none (unattributed, with the NULL sessions).
    contexts = {
        "s-1": WorkContext("github.com", "acme", "api", "feat/ABC-7-x", None, 12, "ABC-7"),
        "s-2": WorkContext("github.com", "acme", "api", "main", None, None, None),
        "s-3": WorkContext("github.com", "acme", "web", "fix/XY-9", None, 3, "XY-9"),
    }
    for session, context in contexts.items():
        await save_context(engine, session, context)
    for group_by in WORK_GROUPS:
        for f in _windows():
            got = {key: t.as_json() for key, t in await usage(engine, group_by, f)}
            assert got == await _raw_by_work(engine, group_by, f), (group_by, f)
    repos = [key for key, _ in await usage(engine, "repo", Filters())]
    assert repos[-1] == UNATTRIBUTED
    assert set(repos) == {"github.com/acme/api", "github.com/acme/web", UNATTRIBUTED}


async def test_usage_by_repo_reads_the_session_rollup(engine: AsyncEngine) -> None:
    """Whole days come from ``session_daily``: a day-aligned window keeps its totals when raw
    events are purged, and follows the rollup, not the raw events."""
    await write_batch(engine, _rows(_events()))
    await save_context(engine, "s-1", WorkContext("github.com", "acme", "api"))
    window = Filters(T0, T0 + timedelta(days=10))
    before = await usage(engine, "repo", window)
    await purge_raw_before(engine, T0 + timedelta(days=4))
    assert await usage(engine, "repo", window) == before
    async with engine.begin() as conn:
        await conn.execute(sa.update(session_daily).values(requests=1))
    rows = await session_rollup(engine)
    assert {key: t.requests for key, t in await usage(engine, "repo", window)} == {
        "github.com/acme/api": sum(1 for r in rows if r["session"] == "s-1"),
        UNATTRIBUTED: sum(1 for r in rows if r["session"] != "s-1"),
    }


async def test_upgrade_backfills_the_session_rollup_from_raw_events(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url, "0010")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(usage_events), _rows(_events()))
        await asyncio.to_thread(upgrade, db_url)
        rows = await session_rollup(engine)
        assert sum(row["requests"] for row in rows) == 300
        assert rows == await session_rollup_from_events(engine)
    finally:
        await engine.dispose()
