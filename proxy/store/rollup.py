"""The rollups: how raw events are summed into ``usage_hourly`` and ``usage_daily`` (and per task
key into ``task_daily`` and ``task_monthly``, per session key into ``session_daily``), live and
from scratch. What a rollup row sums, and its time buckets, are declared in ``aggregates``;
everything here is generated from that (``hourly_sums``, ``task_sums``, ``session_sums``, the
rebuild, ``rollup_deltas``, ``task_deltas``, ``session_deltas``).

Live: the writer (``writes.py``, ``sqlite_write.py``) sums in SQL exactly the rows its
``INSERT … ON CONFLICT DO NOTHING RETURNING`` inserted, in the same transaction, so a row is
counted in both rollups exactly when it exists in ``usage_events``. ``upsert_rollups`` adds any
Python-computed deltas (``rollup_deltas``), in key order: repricing adds differences with it.

Offline: ``rebuild_rollups`` recomputes the hourly rollup from raw events for every hour that
still has raw events (older hours, whose raw events ``purge_raw`` removed, keep their rollup
rows), then the daily rollup from the hourly one for the days it touched. ``rebuild_hours`` does
the same for chosen hours inside a caller's transaction (re-attribution moves events between
rollup keys, and rebuilding their hours is how the sums follow).
The task rollups follow: a rebuild recomputes ``task_daily`` from raw events for the whole
UTC days it covers and ``task_monthly`` from ``task_daily`` for their months; ``session_daily``
likewise from raw events for those days. A day is only rebuilt when none of its hours was
purged (``_raw_backed``): the oldest raw day, when retention cut into it, keeps the task and
session rows written live (it has no hourly task rows to rebuild them from).
``purge_raw`` cuts at an hour boundary so an hour is either wholly raw-backed or rollup-only.
Run both while no recorder is writing (the CLI does); they are maintenance, not the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    delete,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from proxy.store.aggregates import (
    DAILY_KEY,
    DAY_SQL,
    MONTH_SQL,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    SESSION_DAILY_KEY,
    SESSION_ROLLED,
    SPAN_COLUMNS,
    SUMS,
    TASK_DAILY_KEY,
    TASK_KEY,
    TASK_MONTHLY_KEY,
    TASK_ROLLED,
    Sum,
    bucket,
    day_of,
    hour_of,
    key_sql,
    month_of,
    session_key_of,
    session_key_sql,
    task_key_of,
    task_key_sql,
)
from proxy.store.rows import Row
from proxy.store.tables import (
    session_daily,
    task_daily,
    task_monthly,
    usage_daily,
    usage_events,
    usage_hourly,
)
from proxy.usage import as_utc

RollupKey = tuple[datetime, str, str, str, str]
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def dialect_insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that knows ``ON CONFLICT`` for the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _key(row: Row) -> RollupKey:
    return (
        hour_of(row["ts"]),
        row["provider"],
        row["model"] or "",
        row["user"] or "",
        row["team"] or "",
    )


def _zero() -> dict[str, Any]:
    return {s.name: Decimal(0) if s.money else 0 for s in SUMS}


def _add(sums: dict[str, Any], row: Row) -> None:
    """One event into its rollup sums (``Sum.of_row``)."""
    for s in SUMS:
        sums[s.name] += s.of_row(row)


def rollup_deltas(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """One ``usage_hourly`` row of sums per rollup key present in ``rows``."""
    by_key: dict[RollupKey, dict[str, Any]] = {}
    for row in rows:
        _add(by_key.setdefault(_key(row), _zero()), row)
    return [dict(zip(ROLLUP_KEY, key, strict=True)) | sums for key, sums in sorted(by_key.items())]


def daily_deltas(hourly: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``usage_daily`` rows summing hourly ``deltas`` (as ``rollup_deltas`` makes) per day."""
    by_day: dict[RollupKey, dict[str, Any]] = {}
    for delta in hourly:
        key = (day_of(delta["hour"]), *(delta[name] for name in ROLLUP_KEY[1:]))
        sums = by_day.setdefault(key, dict.fromkeys(ROLLUP_SUMS, 0))
        for name in ROLLUP_SUMS:
            sums[name] += delta[name]
    return [dict(zip(DAILY_KEY, key, strict=True)) | sums for key, sums in sorted(by_day.items())]


TaskKey = tuple[Any, ...]
_SPANS = tuple(name for name, _, _ in SPAN_COLUMNS)


def task_deltas(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """One ``task_daily`` row (sums, first and last ``ts``) per task key and day in ``rows``."""
    return _spanned_deltas(rows, task_key_of, TASK_DAILY_KEY)


def session_deltas(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """One ``session_daily`` row (sums, first and last ``ts``) per session key and day."""
    return _spanned_deltas(rows, session_key_of, SESSION_DAILY_KEY)


def _spanned_deltas(
    rows: Iterable[Row], key_of: Callable[[Row], tuple[str, ...]], names: Sequence[str]
) -> list[dict[str, Any]]:
    by_key: dict[TaskKey, dict[str, Any]] = {}
    for row in rows:
        sums = by_key.setdefault((day_of(row["ts"]), *key_of(row)), _zero())
        _add(sums, row)
        ts = row["ts"]
        sums["first_ts"] = min(sums.get("first_ts", ts), ts)
        sums["last_ts"] = max(sums.get("last_ts", ts), ts)
    return [dict(zip(names, k, strict=True)) | v for k, v in sorted(by_key.items())]


def _monthly_deltas(daily: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    by_month: dict[TaskKey, dict[str, Any]] = {}
    for delta in daily:
        key = (month_of(delta["day"]), *(delta[name] for name in TASK_KEY))
        was = by_month.get(key)
        if was is None:
            by_month[key] = {n: delta[n] for n in (*ROLLUP_SUMS, *_SPANS)}
            continue
        for name in ROLLUP_SUMS:
            was[name] += delta[name]
        was["first_ts"] = min(was["first_ts"], delta["first_ts"])
        was["last_ts"] = max(was["last_ts"], delta["last_ts"])
    return [dict(zip(TASK_MONTHLY_KEY, k, strict=True)) | v for k, v in sorted(by_month.items())]


async def upsert_task_rollups(
    conn: AsyncConnection, daily: list[dict[str, Any]], added: Sequence[str] = ROLLUP_SUMS
) -> None:
    """Add the ``added`` sums of ``daily`` task deltas (``task_deltas``, in key order) to
    ``task_daily`` and per month to ``task_monthly``, in the caller's transaction; a new row
    takes the deltas' first and last times."""
    if not daily:
        return
    monthly = _monthly_deltas(daily)
    await _upsert_spanned(
        conn,
        [(task_daily, TASK_DAILY_KEY, daily), (task_monthly, TASK_MONTHLY_KEY, monthly)],
        added,
    )


async def upsert_session_rollup(
    conn: AsyncConnection, daily: list[dict[str, Any]], added: Sequence[str] = ROLLUP_SUMS
) -> None:
    """``upsert_task_rollups`` for ``session_daily`` (deltas from ``session_deltas``)."""
    if daily:
        await _upsert_spanned(conn, [(session_daily, SESSION_DAILY_KEY, daily)], added)


async def _upsert_spanned(
    conn: AsyncConnection,
    targets: Sequence[tuple[Table, Sequence[str], list[dict[str, Any]]]],
    added: Sequence[str],
) -> None:
    for table, key, deltas in targets:
        insert = dialect_insert(conn, table)
        upsert = insert.on_conflict_do_update(
            index_elements=list(key),
            set_={name: table.c[name] + insert.excluded[name] for name in added},
        )
        await conn.execute(upsert, deltas)


async def upsert_rollups(
    conn: AsyncConnection, hourly: list[dict[str, Any]], added: Sequence[str] = ROLLUP_SUMS
) -> None:
    """Add the ``added`` sums of ``hourly`` deltas (in key order) to ``usage_hourly`` and the
    same per day to ``usage_daily``, hourly first, in the caller's transaction."""
    if not hourly:
        return
    for table, key, deltas in (
        (usage_hourly, ROLLUP_KEY, hourly),
        (usage_daily, DAILY_KEY, daily_deltas(hourly)),
    ):
        insert = dialect_insert(conn, table)
        upsert = insert.on_conflict_do_update(
            index_elements=list(key),
            set_={name: table.c[name] + insert.excluded[name] for name in added},
        )
        await conn.execute(upsert, deltas)


Ranges = list[tuple[datetime, datetime | None]]  # [start, end) each; None: no end


def _within(column: ColumnElement[Any], ranges: Ranges) -> ColumnElement[bool]:
    return or_(*(and_(column >= lo, true() if hi is None else column < hi) for lo, hi in ranges))


def _merged(starts: Iterable[datetime], step: timedelta) -> Ranges:
    """``[start, start + step)`` for each start, adjacent ones merged, in order."""
    ranges: list[tuple[datetime, datetime | None]] = []
    for start in sorted(set(starts)):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + step)
        else:
            ranges.append((start, start + step))
    return ranges


def summed(total: Sum) -> ColumnElement[Any]:
    """``total`` over the ``usage_events`` rows of a query, typed as its rollup column (so
    dollars come back as ``Decimal`` on SQLite too)."""
    return literal_column(total.sql(), type_=usage_hourly.c[total.name].type)


def hourly_sums(dialect: str, *where: ColumnElement[bool]) -> Select[Any]:
    """``usage_hourly`` rows (its column names) summed from the raw events matching ``where``:
    what a rollup row is, for ``rebuild_rollups`` and for reports that read the partial hours
    at the edges of a window from raw events."""
    keys: list[ColumnElement[Any]] = [literal_column(sql) for sql in key_sql(dialect)]
    named = zip([*keys, *map(summed, SUMS)], (*ROLLUP_KEY, *ROLLUP_SUMS), strict=True)
    query = select(*(column.label(name) for column, name in named)).select_from(usage_events)
    return query.where(*where).group_by(*keys)


def _rebuild_insert(dialect: str, hours: Ranges) -> Insert:
    query = hourly_sums(dialect, _within(usage_events.c.ts, hours))
    return usage_hourly.insert().from_select([*ROLLUP_KEY, *ROLLUP_SUMS], query)


def _rebuild_daily_insert(dialect: str, days: Ranges) -> Insert:
    h = usage_hourly.c
    day: ColumnElement[Any] = literal_column(bucket(DAY_SQL, dialect, "hour"))
    keys = [day, *(h[n] for n in ROLLUP_KEY[1:])]
    query = select(*keys, *(func.sum(h[n]) for n in ROLLUP_SUMS))
    query = query.where(_within(h.hour, days)).group_by(*keys)
    return usage_daily.insert().from_select([*DAILY_KEY, *ROLLUP_SUMS], query)


def task_sums(dialect: str, *where: ColumnElement[bool]) -> Select[Any]:
    """``task_daily`` rows (its column names) summed from the raw events matching ``where``: what
    a task rollup row is, for the rebuild and for task reports' partial days."""
    keys: list[ColumnElement[Any]] = [literal_column(sql) for sql in task_key_sql(dialect)]
    ts = usage_events.c.ts
    columns = [*keys, *map(summed, SUMS), func.min(ts), func.max(ts)]
    named = zip(columns, ("day", *TASK_ROLLED), strict=True)
    query = select(*(column.label(name) for column, name in named)).select_from(usage_events)
    return query.where(*where).group_by(*keys)


def session_sums(dialect: str, *where: ColumnElement[bool]) -> Select[Any]:
    """``session_daily`` rows (its column names) summed from the raw events matching ``where``:
    what a session rollup row is, for the rebuild and for work-unit reports' partial days."""
    keys: list[ColumnElement[Any]] = [literal_column(sql) for sql in session_key_sql(dialect)]
    ts = usage_events.c.ts
    columns = [*keys, *map(summed, SUMS), func.min(ts), func.max(ts)]
    named = zip(columns, ("day", *SESSION_ROLLED), strict=True)
    query = select(*(column.label(name) for column, name in named)).select_from(usage_events)
    return query.where(*where).group_by(*keys)


def _rebuild_task_inserts(dialect: str, days: Ranges, months: Ranges) -> list[Insert]:
    daily = task_sums(dialect, _within(usage_events.c.ts, days))
    d = task_daily.c
    month: ColumnElement[Any] = literal_column(bucket(MONTH_SQL, dialect, "day"))
    keys = [month, *(d[n] for n in TASK_KEY)]
    sums = [func.sum(d[n]) for n in ROLLUP_SUMS]
    monthly = select(*keys, *sums, func.min(d.first_ts), func.max(d.last_ts))
    monthly = monthly.where(_within(d.day, months)).group_by(*keys)
    return [
        task_daily.insert().from_select(list(TASK_DAILY_KEY) + _SPAN_FREE, daily),
        task_monthly.insert().from_select(list(TASK_MONTHLY_KEY) + _SPAN_FREE, monthly),
    ]


_SPAN_FREE = [*ROLLUP_SUMS, *_SPANS]


async def _rebuild_tasks(conn: AsyncConnection, days: Ranges) -> None:
    """Recompute ``task_daily`` over whole ``days`` from raw events, then ``task_monthly`` for
    their months from ``task_daily``; and ``session_daily`` over ``days`` from raw events."""
    if not days:
        return
    months: Ranges = [(month_of(lo), None if hi is None else _month_after(hi)) for lo, hi in days]
    daily_insert, monthly_insert = _rebuild_task_inserts(conn.dialect.name, days, months)
    await conn.execute(delete(task_daily).where(_within(task_daily.c.day, days)))
    await conn.execute(daily_insert)
    await conn.execute(delete(task_monthly).where(_within(task_monthly.c.month, months)))
    await conn.execute(monthly_insert)
    sessions = session_sums(conn.dialect.name, _within(usage_events.c.ts, days))
    await conn.execute(delete(session_daily).where(_within(session_daily.c.day, days)))
    await conn.execute(
        session_daily.insert().from_select(list(SESSION_DAILY_KEY) + _SPAN_FREE, sessions)
    )


def _month_after(end: datetime) -> datetime:
    """The start of the month after the one holding the instant just before ``end``."""
    last = month_of(end - timedelta(microseconds=1))
    return (last + timedelta(days=32)).replace(day=1)


async def _raw_backed(conn: AsyncConnection, days: Ranges) -> Ranges:
    """``days`` less the days retention cut into: those before the oldest raw event's day, and
    that day too when the hourly rollup holds hours of it older than its oldest raw event."""
    oldest = (await conn.execute(select(func.min(usage_events.c.ts)))).scalar()
    if oldest is None:
        return []
    first = day_of(oldest)
    purged = select(usage_hourly.c.hour).where(
        usage_hourly.c.hour >= first, usage_hourly.c.hour < hour_of(oldest)
    )
    if (await conn.execute(purged.limit(1))).first() is not None:
        first += DAY
    return [(max(lo, first), hi) for lo, hi in days if hi is None or max(lo, first) < hi]


async def _rebuild(conn: AsyncConnection, hours: Ranges, days: Ranges) -> int:
    """Recompute ``usage_hourly`` over ``hours`` from raw events, then ``usage_daily`` over
    ``days`` from ``usage_hourly``, then the task rollups of the whole days of ``days`` that
    cannot have purged hours; returns the hourly rows written."""
    dialect = conn.dialect.name
    await conn.execute(delete(usage_hourly).where(_within(usage_hourly.c.hour, hours)))
    result = await conn.execute(_rebuild_insert(dialect, hours))
    await conn.execute(delete(usage_daily).where(_within(usage_daily.c.day, days)))
    await conn.execute(_rebuild_daily_insert(dialect, days))
    await _rebuild_tasks(conn, await _raw_backed(conn, days))
    return result.rowcount


async def rebuild_rollups(engine: AsyncEngine, since: datetime | None = None) -> int:
    """Recompute ``usage_hourly`` from raw events for every hour from ``since`` (default: the
    hour of the oldest raw event) onwards, then ``usage_daily`` from ``usage_hourly`` for every
    day from the one ``since`` falls in, in one transaction. Returns the hourly rows written."""
    async with engine.begin() as conn:
        if since is None:
            since = (await conn.execute(select(func.min(usage_events.c.ts)))).scalar()
            if since is None:
                return 0
        return await _rebuild(conn, [(hour_of(since), None)], [(day_of(since), None)])


async def rebuild_hours(conn: AsyncConnection, hours: Iterable[datetime]) -> int:
    """Recompute the rollups of exactly these UTC hours (each must still have all its raw
    events, as ``purge_raw`` guarantees) and of their days, in the caller's transaction, after
    ``lock_rollups``. Returns the hourly rows written."""
    starts = {hour_of(hour) for hour in hours}
    if not starts:
        return 0
    days = {day_of(hour) for hour in starts}
    return await _rebuild(conn, _merged(starts, HOUR), _merged(days, DAY))


async def lock_rollups(conn: AsyncConnection) -> None:
    """Hold off concurrent writers (a running recorder) until the caller's transaction ends, so
    a rebuild never races a live rollup update: PostgreSQL locks both rollups against writes
    (readers go on); SQLite takes its one write lock now, before the caller reads."""
    if conn.dialect.name == "postgresql":
        tables = "usage_hourly, usage_daily, task_daily, task_monthly, session_daily"
        await conn.execute(text(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE"))
    else:
        await conn.execute(delete(usage_hourly).where(false()))


async def purge_raw(engine: AsyncEngine, older_than_days: int, now: datetime | None = None) -> int:
    """Delete raw events of whole hours older than ``older_than_days``; the rollup keeps them.
    Returns how many events were deleted."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    return await purge_raw_before(engine, cutoff)


async def purge_raw_before(engine: AsyncEngine, cutoff: datetime) -> int:
    """Delete raw events before the hour ``cutoff`` falls in, in one transaction (idempotent:
    a concurrent purge of the same range deletes each row once). Returns how many it deleted."""
    async with engine.begin() as conn:
        statement = delete(usage_events).where(usage_events.c.ts < hour_of(cutoff))
        result = await conn.execute(statement)
    return result.rowcount


async def purged_before(engine: AsyncEngine) -> datetime | None:
    """The hour before which retention purged raw events (``store.retention`` purges whole
    hours): the oldest raw event's hour when the hourly rollup holds an older hour, the hour
    after the newest rollup hour when no raw event is left; None when nothing was purged (a
    young database has no rollup hour before its oldest raw event)."""
    async with engine.connect() as conn:
        oldest = (await conn.execute(select(func.min(usage_events.c.ts)))).scalar()
        first, last = (
            await conn.execute(select(func.min(usage_hourly.c.hour), func.max(usage_hourly.c.hour)))
        ).one()
    if first is None:
        return None
    if oldest is None:
        return as_utc(last) + timedelta(hours=1)
    raw_hour = hour_of(oldest)
    return raw_hour if as_utc(first) < raw_hour else None


async def oldest_raw(engine: AsyncEngine) -> datetime | None:
    """The time of the oldest raw event, or None when there is none."""
    async with engine.connect() as conn:
        oldest: datetime | None = (await conn.execute(select(func.min(usage_events.c.ts)))).scalar()
    return oldest
