"""The task rollups (``task_daily``, ``task_monthly``) on SQLite and PostgreSQL: equal to the raw
events summed per task key after live writes, a replayed batch, a rebuild, a purge; and the task
reports that read them answer what raw events alone answer, the session's ticket joined at read
time. Repricing and re-attribution keep them right too (``test_reprice``, ``test_reattribute``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports import tasks
from proxy.reports.series import task_hours
from proxy.reports.tasks import list_tasks, task_view, value_by_team
from proxy.reports.totals import sum_columns, totals_of
from proxy.reports.usage import usage
from proxy.reports.window import WITH_CONTEXT, Filters, conditions, work_task
from proxy.sessions import WorkContext, save_context
from proxy.store.engine import make_engine, upgrade
from proxy.store.rollup import purge_raw_before, rebuild_rollups
from proxy.store.rows import Row, event_to_row
from proxy.store.tables import task_daily, task_monthly, usage_events
from proxy.store.writes import write_batch
from proxy.tasks import update_task
from proxy.usage import UsageEvent
from tests.dbfixtures import task_rollups, task_rollups_from_events
from tests.factories import WORK_MODELS, WORK_START, make_event, work_events

T0 = WORK_START
MODELS = WORK_MODELS
# (task, session): a header's task; the session as its task (no header); no task at all.
WORK = (("T-1", "s-1"), ("T-2", "s-1"), ("s-2", "s-2"), ("s-3", "s-3"), (None, "s-4"), (None, None))


def _events(n: int = 300, seed: int = 11) -> list[UsageEvent]:
    return work_events(WORK, n, seed)


def _rows(events: list[UsageEvent]) -> list[Row]:
    return [event_to_row(event) for event in events]


async def _assert_rollups_are_the_events(engine: AsyncEngine) -> None:
    assert await task_rollups(engine) == await task_rollups_from_events(engine)


async def test_task_rollups_are_the_events_summed_and_a_replay_counts_once(
    engine: AsyncEngine,
) -> None:
    rows = _rows(_events())
    assert await write_batch(engine, rows[:200]) == 200
    assert await write_batch(engine, rows[150:]) == 100  # a replayed spool segment overlaps
    assert await write_batch(engine, rows) == 0  # a whole replay: nothing new
    await _assert_rollups_are_the_events(engine)
    daily, monthly = await task_rollups(engine)
    assert sum(row["requests"] for row in daily) == sum(row["requests"] for row in monthly) == 300
    assert {row["month"].month for row in monthly} == {10, 11}
    sessions = {(row["task"], row["session"]) for row in daily}
    assert {("T-1", ""), ("s-2", "s-2"), ("", "s-4"), ("", "")} <= sessions


async def test_a_rebuild_gives_the_task_rollups_back_and_keeps_purged_days(
    engine: AsyncEngine,
) -> None:
    await write_batch(engine, _rows(_events()))
    live = await task_rollups(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(task_daily))
        await conn.execute(sa.delete(task_monthly))
    await rebuild_rollups(engine)
    assert await task_rollups(engine) == live
    async with engine.begin() as conn:
        await conn.execute(sa.update(task_daily).values(requests=0))
    await rebuild_rollups(engine, since=T0 + timedelta(days=5, hours=3))  # from a day's middle
    daily, _ = await task_rollups(engine)
    rebuilt = [row for row in daily if row["day"] >= T0 + timedelta(days=5)]
    assert rebuilt == [row for row in live[0] if row["day"] >= T0 + timedelta(days=5)]
    await rebuild_rollups(engine)
    # Retention cuts into a day: its task rows keep the purged hours through any rebuild.
    await purge_raw_before(engine, T0 + timedelta(days=3, hours=10))
    await rebuild_rollups(engine)
    assert await task_rollups(engine) == live


async def _raw_tasks(engine: AsyncEngine, f: Filters) -> dict[str, dict[str, Any]]:
    """Per task over raw events alone (what the task list answered before the rollups)."""
    task, c = work_task(), usage_events.c
    query = (
        sa.select(task, sa.func.min(c.ts), sa.func.max(c.ts), *sum_columns(usage_events))
        .select_from(WITH_CONTEXT)
        .where(task.is_not(None), *conditions(usage_events, f))
        .group_by(task)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {
        row[0]: {"first": row[1], "last": row[2], **totals_of(row, 3).as_json()} for row in rows
    }


def _windows() -> list[Filters]:
    mid = T0 + timedelta(days=2, hours=7, minutes=41, seconds=3)
    return [
        Filters(),
        Filters(T0, T0 + timedelta(days=10)),  # whole days over a month's end
        Filters(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),  # a month
        Filters(datetime(2026, 10, 1, tzinfo=UTC)),  # a whole month and on
        Filters(mid, mid + timedelta(days=4, hours=9)),  # partial days at both edges
        Filters(mid, mid + timedelta(hours=5)),  # inside one day
        Filters(end=mid),
        Filters(mid, None, user="ada"),
        Filters(T0, T0 + timedelta(days=9), team="core", model=MODELS[1]),
    ]


async def test_the_task_list_is_the_raw_events_per_task_with_tickets_joined_at_read_time(
    engine: AsyncEngine,
) -> None:
    await write_batch(engine, _rows(_events()))
    # Sessions s-1 (a header task) and s-2, s-4 (no header) get a ticket after their events.
    for session in ("s-1", "s-2", "s-4"):
        await save_context(engine, session, WorkContext(branch="feat/ABC-7-x", ticket="ABC-7"))
    for f in _windows():
        expected = await _raw_tasks(engine, f)
        got = {
            row.task_id: {"first": row.first_seen, "last": row.last_seen, **row.totals.as_json()}
            for row in await list_tasks(engine, f)
        }
        assert got == expected, f
        # ``usage --by task`` (raw events) gives the same numbers.
        by_task = {key: t.as_json() for key, t in await usage(engine, "task", f) if key != "(none)"}
        listed = {
            key: {k: v for k, v in row.items() if k not in ("first", "last")}
            for key, row in got.items()
        }
        assert by_task == listed, f
    tasks = {row.task_id for row in await list_tasks(engine, Filters())}
    assert tasks == {"T-1", "T-2", "ABC-7", "s-3"}  # s-1's header tasks keep their own task


async def test_one_tasks_view_and_hours_are_the_list_row_of_its_events(
    engine: AsyncEngine,
) -> None:
    await write_batch(engine, _rows(_events()))
    await save_context(engine, "s-2", WorkContext(ticket="ABC-7"))
    await save_context(engine, "s-4", WorkContext(ticket="ABC-7"))
    await update_task(engine, "ABC-7", {"value_usd": Decimal(100)})
    listed = {row.task_id: row for row in await list_tasks(engine, Filters())}
    for task_id in ("ABC-7", "T-1", "s-3"):
        view = await task_view(engine, task_id)
        assert view is not None
        assert view.totals.as_json() == listed[task_id].totals.as_json()
        assert (view.first_seen, view.last_seen) == (
            listed[task_id].first_seen,
            listed[task_id].last_seen,
        )
        hours = await task_hours(engine, task_id)
        assert sum(t.requests for _, t in hours) == view.totals.requests
        assert sum(t.cost_usd for _, t in hours) == view.totals.cost_usd
    view = await task_view(engine, "ABC-7")
    assert view is not None
    assert view.sessions == ["s-2", "s-4"]
    by_team = await value_by_team(engine)
    assert sum(cost for _, _, cost in by_team) == listed["ABC-7"].totals.cost_usd
    assert await task_view(engine, "s-2") is None  # its events are the ticket's now


@pytest.mark.parametrize("direct_days", [tasks.DIRECT_DAYS, 0])  # 0: bound every window
async def test_a_limited_list_is_the_head_of_the_whole_list_in_every_order(
    engine: AsyncEngine, direct_days: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is applied in SQL (cost, recency, task id for ROI's unknowns; a window that
    is not whole months bounded by the months around it): the first ``limit`` rows are exactly
    the head of the full list, tied costs broken by task id."""
    monkeypatch.setattr(tasks, "DIRECT_DAYS", direct_days)
    events = _events()
    for n in range(4):  # four tasks of one request each, tied on cost
        events += [make_event(started_at=T0 + timedelta(days=n), task=f"tie-{n}", session="s-9")]
    # Decoys: the costliest tasks of October by far, but on its first day (outside the bounded
    # windows below, inside the months around them), with one request inside.
    first_day = datetime(2026, 10, 1, 12, tzinfo=UTC)
    for n in range(6):
        at = [first_day + timedelta(minutes=i) for i in range(120)] + [T0 + timedelta(hours=n)]
        events += [make_event(started_at=t, task=f"decoy-{n}", session="s-8") for t in at]
    await write_batch(engine, _rows(events))
    await save_context(engine, "s-4", WorkContext(ticket="ABC-7"))
    await update_task(engine, "T-2", {"value_usd": Decimal(50)})
    await update_task(engine, "tie-2", {"human_hours": Decimal(2), "hourly_rate_usd": Decimal(90)})
    windows = (
        Filters(),
        Filters(T0 + timedelta(days=1), T0 + timedelta(days=6)),  # inside one month
        Filters(T0 + timedelta(days=1, hours=5), T0 + timedelta(days=8)),  # over a month's end
        Filters(start=T0 + timedelta(days=2)),
        Filters(end=T0 + timedelta(days=7, minutes=3)),
        Filters(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),  # months
        Filters(datetime(2026, 10, 2, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)),
        Filters(datetime(2026, 10, 1, 3, tzinfo=UTC), None, team="core"),
    )
    for f in windows:
        for sort in ("cost", "recent", "roi"):
            whole = [row.as_json() for row in await list_tasks(engine, f, sort)]
            assert len(whole) > 6
            for limit in (1, 2, 3, 6, 50):
                head = [row.as_json() for row in await list_tasks(engine, f, sort, limit)]
                assert head == whole[:limit], (f, sort, limit)


async def test_task_reports_keep_the_days_retention_purged(engine: AsyncEngine) -> None:
    """Whole days come from the task rollups, so purging raw events changes no task total of a
    day-aligned window, and ``usage --by task`` still agrees with the list."""
    await write_batch(engine, _rows(_events()))
    window = Filters(T0, T0 + timedelta(days=10))
    before = {row.task_id: row.totals.as_json() for row in await list_tasks(engine, window)}
    await purge_raw_before(engine, T0 + timedelta(days=4))
    after = {row.task_id: row.totals.as_json() for row in await list_tasks(engine, window)}
    assert after == before
    by_task = {key: t.as_json() for key, t in await usage(engine, "task", window)}
    assert {key: value for key, value in by_task.items() if key != "(none)"} == before


async def test_upgrade_backfills_the_task_rollups_from_raw_events(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url, "0009")
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(usage_events), _rows(_events()))
        await asyncio.to_thread(upgrade, db_url)
        daily, monthly = await task_rollups(engine)
        assert sum(row["requests"] for row in monthly) == 300
        assert (daily, monthly) == await task_rollups_from_events(engine)
    finally:
        await engine.dispose()
