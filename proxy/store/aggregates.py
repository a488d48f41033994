"""What a rollup row is, declared once: its key, its sums and its time buckets.

``usage_hourly`` and ``usage_daily`` hold one row per key (the UTC hour or day, provider,
model, user, team; '' standing for NULL) with one column per ``Sum`` of ``SUMS``: an aggregate
over the ``usage_events`` rows of that key. Everything that writes or reads those sums is
generated from ``SUMS``: the rollup tables' columns (``tables``), the live writers (``writes``
for PostgreSQL, ``sqlite_write``), the rebuild, ``hourly_sums`` and the Python deltas of
repricing and re-attribution (``rollup``), and what reports read (``reports.totals``). Adding a
rollup column is one ``Sum`` line here plus its migration.

The event's quantities are declared here too, column by column (``COUNT_COLUMNS``,
``COST_COLUMNS``): each is summed into the rollups under its own name, so the event and its
rollups cannot drift apart; ``tables`` builds ``usage_events`` from the same lists.

A ``Sum`` adds up, over the events its ``when`` holds for, its columns ``of`` (1 per event when
there are none). ``Sum.sql`` renders it in SQL that SQLite and PostgreSQL both run, from schema
names only; ``Sum.of_row`` is the same for one row in Python (a NULL counts 0, as SQL's ``sum``
skips it). Every sum is additive, so a daily row is the sum of its hourly rows.

The time buckets (``HOUR_SQL``, ``DAY_SQL``, ``MONTH_SQL``, ``DAY_LABEL_SQL``) are SQL templates
per dialect over one timestamp column; ``hour_of``/``day_of``/``month_of`` are the same buckets in
Python.

The task rollups (``task_daily``, ``task_monthly``) hold the same ``SUMS`` per UTC day (month) and
``TASK_KEY``: the event's own task and, when the event named no task of its own (its task is
NULL or its session, attribution's default), its session; '' standing for NULL. A task report
joins that session to ``session_context`` at read time, so an event whose session later gets a
ticket moves to the ticket's task without any rollup row changing (``reports.tasks``). Each row
also keeps the first and last ``ts`` of its events (``SPAN_COLUMNS``): merged with min/max.

The session rollup (``session_daily``) holds the same ``SUMS`` and spans per UTC day and
``SESSION_KEY``: the event's session ('' for NULL) whatever its task, provider, model, user,
team. Work-unit reports (by repository, branch, pull request, ticket) join its session to
``session_context`` at read time, so context that arrives after the events counts at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from proxy.usage import COST_KINDS, TOKEN_KINDS, Status, as_utc

# The event's quantities, each summed into the rollups under its own name.
TOKEN_KIND_COLUMNS: dict[str, str] = {kind: f"{kind}_tokens" for kind in TOKEN_KINDS}
COUNT_COLUMNS: tuple[str, ...] = (
    *TOKEN_KIND_COLUMNS.values(),
    "reasoning_tokens",  # part of output_tokens: observability only
    "web_search_requests",
)
# ``Cost.by_kind`` key -> column.
COST_KIND_COLUMNS: dict[str, str] = {kind: f"cost_{kind}_usd" for kind in COST_KINDS}
# ``api_equivalent_usd``: a subscription event's list price; its ``cost_usd`` (paid) is 0. The
# two kinds of dollars sit side by side in every rollup and report, never summed.
COST_COLUMNS: tuple[str, ...] = (
    "cost_usd",
    "sticker_usd",
    *COST_KIND_COLUMNS.values(),
    "api_equivalent_usd",
)

ROLLUP_KEY: tuple[str, ...] = ("hour", "provider", "model", "user", "team")
DAILY_KEY: tuple[str, ...] = ("day", *ROLLUP_KEY[1:])
# The task rollups' key after their time column (``day``, ``month``): task, session (see above).
TASK_KEY: tuple[str, ...] = ("task", "session", *ROLLUP_KEY[1:])
TASK_DAILY_KEY: tuple[str, ...] = ("day", *TASK_KEY)
TASK_MONTHLY_KEY: tuple[str, ...] = ("month", *TASK_KEY)
# The session rollup's key after its time column (``day``): every event's session.
SESSION_KEY: tuple[str, ...] = ("session", *ROLLUP_KEY[1:])
SESSION_DAILY_KEY: tuple[str, ...] = ("day", *SESSION_KEY)
# The first and last event time of a task rollup row: (column, SQL aggregate, SQL merge).
SPAN_COLUMNS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("first_ts", "min", {"postgresql": "least", "sqlite": "min"}),
    ("last_ts", "max", {"postgresql": "greatest", "sqlite": "max"}),
)


def quoted(name: str) -> str:
    """A schema name as a quoted SQL identifier (``user`` is reserved in PostgreSQL)."""
    return f'"{name}"'


@dataclass(frozen=True, slots=True)
class When:
    """A condition on one event's ``column``, in SQL (``test``) and in Python (``holds``)."""

    column: str
    test: str  # SQL after the column
    holds: Callable[[Any], bool]

    def sql(self) -> str:
        return f"{quoted(self.column)} {self.test}"


FAILED = When("status", f"<> '{Status.OK}'", lambda status: status != Status.OK)
UNPRICED = When("cost_usd", "IS NULL", lambda cost: cost is None)
SEAT_PRICED = When("api_equivalent_usd", "IS NOT NULL", lambda value: value is not None)


@dataclass(frozen=True, slots=True)
class Sum:
    """One rollup column: the sum of ``of`` (1 per event when empty) over events ``when``
    holds for (every event when None). ``money``: dollars (``Fixed``), else a count."""

    name: str
    of: tuple[str, ...] = ()
    when: When | None = None
    money: bool = False

    @property
    def reads(self) -> tuple[str, ...]:
        """The ``usage_events`` columns this sum reads."""
        return self.of if self.when is None else (*self.of, self.when.column)

    def sql(self) -> str:
        """The aggregate over a set of ``usage_events`` rows, never NULL."""
        added = " + ".join(map(quoted, self.of)) or "1"
        if self.when is not None:
            return f"coalesce(sum(CASE WHEN {self.when.sql()} THEN {added} ELSE 0 END), 0)"
        return f"coalesce(sum({added}), 0)" if self.of else "count(*)"

    def of_row(self, row: Mapping[str, Any]) -> int | Decimal:
        """What one event adds to this sum."""
        if self.when is not None and not self.when.holds(row[self.when.column]):
            return 0
        if not self.of:
            return 1
        values = [row[name] for name in self.of]
        return 0 if None in values else sum(values)


SUMS: tuple[Sum, ...] = (
    Sum("requests"),
    Sum("errors", when=FAILED),
    Sum("unpriced_requests", when=UNPRICED),
    # Blended $/MTok divides priced dollars by priced tokens only: these are left out.
    Sum("unpriced_tokens", of=tuple(TOKEN_KIND_COLUMNS.values()), when=UNPRICED),
    # Subscription (seat) traffic with a list price: paid $0, so blended $/MTok leaves it out too.
    Sum("api_equivalent_requests", when=SEAT_PRICED),
    Sum("api_equivalent_tokens", of=tuple(TOKEN_KIND_COLUMNS.values()), when=SEAT_PRICED),
    *(Sum(name, of=(name,)) for name in COUNT_COLUMNS),
    *(Sum(name, of=(name,), money=True) for name in COST_COLUMNS),
)
ROLLUP_SUMS: tuple[str, ...] = tuple(s.name for s in SUMS)
SUM_OF: dict[str, Sum] = {s.name: s for s in SUMS}
# Every ``usage_events`` column some sum reads, each once.
SUMMED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(c for s in SUMS for c in s.reads))


def sums_reading(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The rollup sums that change when any of ``columns`` of an event changes."""
    return tuple(s.name for s in SUMS if not set(s.reads).isdisjoint(columns))


# The UTC hour (day) a timestamp column falls in, per dialect: on PostgreSQL a timestamptz, on
# SQLite the text SQLAlchemy stores a UTC DATETIME as ("2026-11-26 14:00:00.000000").
HOUR_SQL: dict[str, str] = {
    "postgresql": "date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {column})",
}
DAY_SQL: dict[str, str] = {
    "postgresql": "date_trunc('day', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "substr({column}, 1, 10) || ' 00:00:00.000000'",
}
MONTH_SQL: dict[str, str] = {
    "postgresql": "date_trunc('month', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "substr({column}, 1, 7) || '-01 00:00:00.000000'",
}
DAY_LABEL_SQL: dict[str, str] = {  # the UTC day as text, YYYY-MM-DD
    "postgresql": "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "sqlite": "substr({column}, 1, 10)",
}


def bucket(templates: Mapping[str, str], dialect: str, column: str) -> str:
    """One of the bucket templates above, over ``column``, for ``dialect``."""
    return templates[dialect].format(column=quoted(column))


def key_sql(dialect: str, time: Mapping[str, str] = HOUR_SQL) -> list[str]:
    """The rollup key of a ``usage_events`` row, in ``ROLLUP_KEY`` order, with ``time`` (the
    hour, or ``DAY_SQL`` for the daily key) of its ``ts``."""
    who = (f"coalesce({quoted(name)}, '')" for name in ROLLUP_KEY[2:])
    return [bucket(time, dialect, "ts"), quoted("provider"), *who]


def task_key_sql(dialect: str, time: Mapping[str, str] = DAY_SQL) -> list[str]:
    """The task rollup key of a ``usage_events`` row, in ``(time, *TASK_KEY)`` order."""
    inherited = f"{quoted('task')} IS NULL OR {quoted('task')} = {quoted('session')}"
    session = f"CASE WHEN {inherited} THEN coalesce({quoted('session')}, '') ELSE '' END"
    time_sql, provider, *who = key_sql(dialect, time)
    return [time_sql, f"coalesce({quoted('task')}, '')", session, provider, *who]


def session_key_sql(dialect: str, time: Mapping[str, str] = DAY_SQL) -> list[str]:
    """The session rollup key of a ``usage_events`` row, in ``(time, *SESSION_KEY)`` order."""
    time_sql, provider, *who = key_sql(dialect, time)
    return [time_sql, f"coalesce({quoted('session')}, '')", provider, *who]


def task_rows_sql(dialect: str, source: str, time: Mapping[str, str] = DAY_SQL) -> str:
    """``SELECT`` of task rollup rows (``(time, *TASK_KEY)``, ``SUMS``, ``SPAN_COLUMNS``) summed
    from the events of ``source`` (a table or CTE of ``usage_events`` rows; the caller may append
    a WHERE by ending ``source`` with it), in key order: what every task rollup writer inserts."""
    return spanned_rows_sql(task_key_sql(dialect, time), source)


def session_rows_sql(dialect: str, source: str) -> str:
    """``task_rows_sql`` for the session rollup: ``(day, *SESSION_KEY)``, sums, spans."""
    return spanned_rows_sql(session_key_sql(dialect), source)


def spanned_rows_sql(keys: list[str], source: str) -> str:
    """``SELECT`` of ``keys``, ``SUMS`` and ``SPAN_COLUMNS`` over ``source``, in key order."""
    spans = [f"{aggregate}({quoted('ts')})" for _, aggregate, _ in SPAN_COLUMNS]
    by = ", ".join(str(i) for i in range(1, len(keys) + 1))
    columns = ", ".join([*keys, *(s.sql() for s in SUMS), *spans])
    return f"SELECT {columns} FROM {source} GROUP BY {by} ORDER BY {by}"  # noqa: S608


def task_key_of(row: Mapping[str, Any]) -> tuple[str, ...]:
    """``TASK_KEY`` of one event, as ``task_key_sql`` computes it."""
    task, session = row["task"], row["session"]
    inherited = task is None or task == session
    who = (row[name] or "" for name in ROLLUP_KEY[2:])
    return (task or "", (session or "") if inherited else "", row["provider"], *who)


def session_key_of(row: Mapping[str, Any]) -> tuple[str, ...]:
    """``SESSION_KEY`` of one event, as ``session_key_sql`` computes it."""
    who = (row[name] or "" for name in ROLLUP_KEY[2:])
    return (row["session"] or "", row["provider"], *who)


def added_sql(table: str) -> str:
    """The ``ON CONFLICT … DO UPDATE SET`` list that adds incoming sums to ``table``'s row."""
    return ", ".join(
        f"{quoted(n)} = {table}.{quoted(n)} + excluded.{quoted(n)}" for n in ROLLUP_SUMS
    )


TASK_ROLLED: tuple[str, ...] = (*TASK_KEY, *ROLLUP_SUMS, *(n for n, _, _ in SPAN_COLUMNS))
SESSION_ROLLED: tuple[str, ...] = (*SESSION_KEY, *ROLLUP_SUMS, *(n for n, _, _ in SPAN_COLUMNS))


def task_added_sql(table: str, dialect: str) -> str:
    """``added_sql`` for a task (or session) rollup: the sums added, the first and last times
    merged."""
    spans = (
        f"{quoted(n)} = {merge[dialect]}({table}.{quoted(n)}, excluded.{quoted(n)})"
        for n, _, merge in SPAN_COLUMNS
    )
    return ", ".join((added_sql(table), *spans))


def hour_of(ts: datetime) -> datetime:
    """The UTC hour an instant falls in: the hourly rollup's time key."""
    return as_utc(ts).replace(minute=0, second=0, microsecond=0)


def month_of(ts: datetime) -> datetime:
    """The UTC month (its first midnight) an instant falls in: the monthly task rollup's key."""
    return day_of(ts).replace(day=1)


def day_of(ts: datetime) -> datetime:
    """The UTC day (midnight) an instant falls in: the daily rollup's time key."""
    return as_utc(ts).replace(hour=0, minute=0, second=0, microsecond=0)
