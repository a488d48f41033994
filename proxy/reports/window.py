"""What a report is asked about: the window and filters (``Filters``), the WHERE clauses that
select exactly them (``conditions``), and an event's task through its session's work context
(``WITH_CONTEXT``, ``work_task``). Plain definitions, below every report that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from proxy.reports.totals import ReportError
from proxy.store.tables import session_context, usage_events
from proxy.usage import BACKFILL_SOURCE, as_utc

Bound = datetime | None


@dataclass(slots=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None
    team: str | None = None
    model: str | None = None
    source: str | None = None  # "proxy", "backfill" or None: both (``reports.usage``)

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ReportError(f"start {self.start.isoformat()} is after end {self.end.isoformat()}")
        if self.source not in SOURCES:
            raise ReportError(f"source must be proxy or backfill; got {self.source!r}")

    def window_json(self) -> dict[str, str | None]:
        """The window as reports echo it: ISO 8601 UTC, null for an open side."""
        return {"start": _iso(self.start), "end": _iso(self.end)}


SOURCES = (None, "proxy", "backfill")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()


WITH_CONTEXT = usage_events.outerjoin(
    session_context, usage_events.c.session == session_context.c.session
)


def work_task() -> sa.ColumnElement[Any]:
    """The task of an event of ``WITH_CONTEXT``: the one a header named; else its session's
    ticket (from the branch name); else the session (attribution's default)."""
    c, ctx = usage_events.c, session_context.c
    inherited = sa.or_(c.task.is_(None), c.task == c.session)  # no task header
    return sa.case((sa.and_(inherited, ctx.ticket.is_not(None)), ctx.ticket), else_=c.task)


def between(column: sa.ColumnElement[Any], lo: Bound, hi: Bound) -> list[sa.ColumnElement[bool]]:
    where = [] if lo is None else [column >= lo]
    return where if hi is None else [*where, column < hi]


def who(table: sa.Table, f: Filters) -> list[sa.ColumnElement[bool]]:
    values = {name: getattr(f, name) for name in ("user", "team", "model")}
    found = [table.c[name] == value for name, value in values.items() if value is not None]
    if f.source is not None:
        if table is not usage_events:  # a rollup cannot answer by source: never silently
            raise ReportError("a report by source reads raw events; this one reads the rollups")
        backfilled = table.c.attribution_source == BACKFILL_SOURCE
        found.append(backfilled if f.source == "backfill" else sa.not_(backfilled))
    return found


def conditions(table: sa.Table, f: Filters) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for exactly ``f`` on raw events (``start <= ts < end``), or on a rollup's
    hours (``start <= hour < end``: exact for a window of whole hours)."""
    time = table.c.ts if table is usage_events else table.c[table.c.keys()[0]]
    return between(time, f.start, f.end) + who(table, f)
