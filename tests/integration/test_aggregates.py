"""Each rollup sum says the same thing in SQL and in Python (``aggregates.Sum``).

The writers sum in SQL (``Sum.sql``); repricing and re-attribution add Python deltas
(``Sum.of_row`` through ``rollup_deltas``). Both are rendered from one declaration: this
checks they agree, row for row, on events that exercise every condition (errors, unknown
prices, missing model/user/team, hours and days apart)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.rollup import rollup_deltas
from proxy.store.rows import event_to_row
from proxy.store.tables import usage_events
from proxy.store.writes import write_batch
from proxy.usage import Status, Usage
from tests.dbfixtures import rollup_rows
from tests.factories import make_event

T0 = datetime(2026, 11, 29, 23, 10, tzinfo=UTC)


async def test_python_deltas_equal_the_sums_the_writers_wrote(engine: AsyncEngine) -> None:
    events = [
        make_event(started_at=T0),
        make_event(started_at=T0 + timedelta(minutes=5), priced=False),
        make_event(started_at=T0, status=Status.UPSTREAM_ERROR, usage=Usage(), priced=False),
        make_event(started_at=T0, model=None, user=None, team=None),
        make_event(started_at=T0 + timedelta(hours=1), usage=Usage(input=7, reasoning=3)),
        make_event(started_at=T0 + timedelta(days=1), priced=False, model="mystery-1"),
    ]
    await write_batch(engine, [event_to_row(event) for event in events])
    async with engine.connect() as conn:
        stored = [dict(row) for row in (await conn.execute(sa.select(usage_events))).mappings()]

    assert rollup_deltas(stored) == await rollup_rows(engine)
