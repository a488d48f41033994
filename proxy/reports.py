"""Every aggregate a person asks for, shared by the REST API and the CLI.

Reports over a time range read the hourly rollup (fast at millions of events); reports about one
task or one session, or grouped by task or session, read the raw events. Money stays ``Decimal``
from the database to the JSON string. Definitions (DESIGN.md):
blended $/MTok = Σ cost / Σ all five token kinds × 10⁶; cache hit rate = cache_read / all input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.tables import usage_events, usage_hourly
from proxy.usage import INPUT_KINDS, TOKEN_KINDS

GROUPS = ("user", "team", "model", "provider", "task", "session", "day")
_RAW_GROUPS = {"task", "session"}
_MTOK = Decimal(1_000_000)
_MONEY = Decimal("0.000001")
_TOKEN_COLUMNS = {kind: f"{kind}_tokens" for kind in TOKEN_KINDS}


class ReportError(ValueError):
    """A report was asked for with arguments that make no sense (shown to the user as 400)."""


@dataclass(slots=True)
class Totals:
    """Sums over any slice; everything else a report shows is derived from these."""

    requests: int = 0
    errors: int = 0
    unpriced_requests: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    web_search_requests: int = 0
    cost_usd: Decimal = Decimal(0)
    sticker_usd: Decimal = Decimal(0)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    @property
    def blended_usd_per_mtok(self) -> Decimal | None:
        total = self.total_tokens
        return None if not total else (self.cost_usd * _MTOK / total).quantize(_MONEY)

    @property
    def sticker_usd_per_mtok(self) -> Decimal | None:
        total = self.total_tokens
        return None if not total else (self.sticker_usd * _MTOK / total).quantize(_MONEY)

    @property
    def cache_hit_rate(self) -> float | None:
        all_input = sum(self.tokens[k] for k in INPUT_KINDS)
        return None if not all_input else round(self.tokens["cache_read"] / all_input, 6)

    def as_json(self) -> dict[str, Any]:
        blended, sticker = self.blended_usd_per_mtok, self.sticker_usd_per_mtok
        saved = self.sticker_usd - self.cost_usd
        return {
            "requests": self.requests,
            "errors": self.errors,
            "unpriced_requests": self.unpriced_requests,
            "tokens": dict(self.tokens),
            "total_tokens": self.total_tokens,
            "web_search_requests": self.web_search_requests,
            "cost_usd": _money(self.cost_usd),
            "sticker_usd": _money(self.sticker_usd),
            "cache_savings_usd": _money(saved),
            "blended_usd_per_mtok": None if blended is None else str(blended),
            "sticker_usd_per_mtok": None if sticker is None else str(sticker),
            "cache_hit_rate": self.cache_hit_rate,
        }


def _money(value: Decimal) -> str:
    return str(value.quantize(_MONEY))


def _sum_columns(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    c = table.c
    if table is usage_events:
        requests: sa.ColumnElement[Any] = sa.func.count()
        errors: sa.ColumnElement[Any] = sa.func.sum(sa.case((c.status != "ok", 1), else_=0))
        unpriced: sa.ColumnElement[Any] = sa.func.sum(sa.case((c.cost_usd.is_(None), 1), else_=0))
    else:
        requests = sa.func.sum(c.requests)
        errors = sa.func.sum(c.errors)
        unpriced = sa.func.sum(c.unpriced_requests)
    tokens = [sa.func.sum(c[_TOKEN_COLUMNS[k]]) for k in TOKEN_KINDS]
    money = [sa.func.sum(c.cost_usd), sa.func.sum(c.sticker_usd)]
    return [requests, errors, unpriced, *tokens, sa.func.sum(c.web_search_requests), *money]


def _totals(row: sa.Row[Any] | tuple[Any, ...], offset: int = 0) -> Totals:
    values = list(row)[offset:]
    n = len(TOKEN_KINDS)
    return Totals(
        requests=int(values[0] or 0),
        errors=int(values[1] or 0),
        unpriced_requests=int(values[2] or 0),
        tokens={k: int(v or 0) for k, v in zip(TOKEN_KINDS, values[3 : 3 + n], strict=True)},
        web_search_requests=int(values[3 + n] or 0),
        cost_usd=Decimal(values[4 + n] or 0),
        sticker_usd=Decimal(values[5 + n] or 0),
    )


@dataclass(slots=True)
class TaskView:
    task_id: str
    first_seen: datetime
    last_seen: datetime
    users: list[str]
    sessions: list[str]
    totals: Totals
    by_model: dict[str, Totals]

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "users": self.users,
            "sessions": self.sessions,
            **self.totals.as_json(),
            "by_model": {model: t.as_json() for model, t in self.by_model.items()},
        }


async def task_view(engine: AsyncEngine, task_id: str) -> TaskView | None:
    """One task's tokens and dollars, from its raw events. None if no event names it."""
    c = usage_events.c
    where = c.task == task_id
    async with engine.connect() as conn:
        span = (
            await conn.execute(sa.select(sa.func.min(c.ts), sa.func.max(c.ts)).where(where))
        ).one()
        if span[0] is None:
            return None
        by_model_rows = await conn.execute(
            sa.select(c.model, *_sum_columns(usage_events)).where(where).group_by(c.model)
        )
        by_model = {(row[0] or "unknown"): _totals(row, 1) for row in by_model_rows}
        users = await _distinct(conn, c.user, where)
        sessions = await _distinct(conn, c.session, where)
    total = Totals()
    for part in by_model.values():
        _add(total, part)
    return TaskView(task_id, _utc(span[0]), _utc(span[1]), users, sessions, total, by_model)


async def _distinct(conn: Any, column: sa.Column[Any], where: Any) -> list[str]:
    rows = await conn.execute(sa.select(column).where(where, column.is_not(None)).distinct())
    return sorted(str(r[0]) for r in rows)


def _add(into: Totals, part: Totals) -> None:
    into.requests += part.requests
    into.errors += part.errors
    into.unpriced_requests += part.unpriced_requests
    into.web_search_requests += part.web_search_requests
    into.cost_usd += part.cost_usd
    into.sticker_usd += part.sticker_usd
    for kind in TOKEN_KINDS:
        into.tokens[kind] += part.tokens[kind]


@dataclass(slots=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    user: str | None = None
    team: str | None = None
    model: str | None = None


async def usage(engine: AsyncEngine, group_by: str, filters: Filters) -> list[tuple[str, Totals]]:
    """Totals per group over a time range; rollup unless grouping by task or session."""
    if group_by not in GROUPS:
        raise ReportError(f"group_by must be one of {', '.join(GROUPS)}; got {group_by!r}")
    table = usage_events if group_by in _RAW_GROUPS else usage_hourly
    key = _group_key(table, group_by, engine)
    query = sa.select(key.label("key"), *_sum_columns(table)).group_by(key).order_by(key)
    query = query.where(*_conditions(table, filters))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [(_key_text(row[0]), _totals(row, 1)) for row in rows]


def total_of(rows: list[tuple[str, Totals]]) -> Totals:
    total = Totals()
    for _, part in rows:
        _add(total, part)
    return total


def _group_key(table: sa.Table, group_by: str, engine: AsyncEngine) -> sa.ColumnElement[Any]:
    if group_by == "day":
        column = table.c.ts if table is usage_events else table.c.hour
        if engine.dialect.name == "sqlite":
            return sa.func.substr(column, 1, 10)
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return table.c[group_by]


def _conditions(table: sa.Table, f: Filters) -> list[sa.ColumnElement[bool]]:
    c = table.c
    time_col = c.ts if table is usage_events else c.hour
    conditions: list[sa.ColumnElement[bool]] = []
    if f.start is not None:
        conditions.append(time_col >= _hour_floor(f.start, table))
    if f.end is not None:
        conditions.append(time_col < f.end)
    for name in ("user", "team", "model"):
        value = getattr(f, name)
        if value is not None:
            conditions.append(c[name] == value)
    return conditions


def _hour_floor(moment: datetime, table: sa.Table) -> datetime:
    if table is usage_events:
        return moment
    return moment.replace(minute=0, second=0, microsecond=0)


def _key_text(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
