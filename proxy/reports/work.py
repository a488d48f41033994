"""One slice of raw events seen whole: its span, people, sessions and totals per model.

``slice_of(engine, where)`` answers for any condition on ``window.WITH_CONTEXT`` (events joined
to their session's work context): one task (``tasks.task_view``) or one work unit
(``work_view``: a pull request ``owner/name#123``, a repository, a branch or a ticket, keyed as
``usage --by`` keys them). Every event of the slice counts, whatever its time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import ReportError, Totals, sum_columns, sum_totals, totals_of
from proxy.reports.usage import WORK_GROUPS, work_key
from proxy.reports.window import WITH_CONTEXT
from proxy.store.tables import usage_events
from proxy.usage import as_utc


@dataclass(slots=True)
class Slice:
    first_seen: datetime
    last_seen: datetime
    users: list[str]
    sessions: list[str]
    totals: Totals
    by_model: dict[str, Totals]

    def as_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "users": self.users,
            "sessions": self.sessions,
            **self.totals.as_json(),
            "by_model": {model: t.as_json() for model, t in self.by_model.items()},
        }


async def slice_of(engine: AsyncEngine, where: sa.ColumnElement[bool]) -> Slice | None:
    """The events of ``WITH_CONTEXT`` matching ``where``, seen whole; None when there are none."""
    c = usage_events.c
    async with engine.connect() as conn:
        span_query = sa.select(sa.func.min(c.ts), sa.func.max(c.ts)).select_from(WITH_CONTEXT)
        span = (await conn.execute(span_query.where(where))).one()
        if span[0] is None:
            return None
        by_model_rows = await conn.execute(
            sa.select(c.model, *sum_columns(usage_events))
            .select_from(WITH_CONTEXT)
            .where(where)
            .group_by(c.model)
        )
        by_model = {(row[0] or "unknown"): totals_of(row, 1) for row in by_model_rows}
        users = await _distinct(conn, c.user, where)
        sessions = await _distinct(conn, c.session, where)
    total = sum_totals(list(by_model.values()))
    return Slice(as_utc(span[0]), as_utc(span[1]), users, sessions, total, by_model)


async def _distinct(conn: Any, column: sa.Column[Any], where: Any) -> list[str]:
    query = sa.select(column).select_from(WITH_CONTEXT).where(where, column.is_not(None))
    rows = await conn.execute(query.distinct())
    return sorted(str(r[0]) for r in rows)


async def work_view(engine: AsyncEngine, group_by: str, key: str) -> Slice | None:
    """The events of one work unit (``group_by`` one of ``WORK_GROUPS``, ``key`` as
    ``usage --by`` shows it, e.g. ``acme/widgets#123``); None when no event has it."""
    if group_by not in WORK_GROUPS:
        raise ReportError(f"a work unit is one of {', '.join(WORK_GROUPS)}; got {group_by!r}")
    return await slice_of(engine, work_key(group_by) == key)
