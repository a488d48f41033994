"""The schema, as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

``migrations/`` creates exactly this schema (tests/test_migrations.py proves there is no diff).
Change a table here and add a migration in the same change.

- ``usage_events``: append-only, one row per proxied exchange, keyed by ``event_id`` so a replayed
  write is a no-op. ``cost_usd`` NULL means "no price known", never $0. ``stop_reason`` as the
  response said it; ``usage_problem`` the ``usage.Problem`` values met reading it (comma
  separated, NULL when none); ``iterations`` Anthropic's per-step usage as JSON (``rows``),
  NULL when the answer had none: an event priced from several models keeps one row, its
  ``model`` the one that produced the answer, its tokens and cost the sum over the steps, and
  this column the detail ``reprice`` needs to price it again exactly. Secondary indexes only
  where a query needs one (each costs the insert path a few µs per event): ``ts`` (raw ranges,
  retention, repricing), ``task`` (one task's view), ``(user, ts)`` (raw reports for one user),
  and ``session`` only where ``task`` is NULL (partial: one task's view finds the events its
  sessions' ticket gives it; the proxy records a session's events with a task, so its traffic
  rarely enters this index).
- ``usage_hourly``: the rollup; key (hour, provider, model, user, team) with '' standing for
  NULL so the key is always comparable. Kept when raw events are purged. Its sums, and how each
  comes from raw events, are declared once in ``aggregates`` (``SUMS``), for every writer and
  reader; so are the event's token and cost columns this module builds ``usage_events`` with.
- ``usage_daily``: the same sums per UTC day (key ``day``, midnight UTC), written in the same
  statement/transaction as ``usage_hourly``; reports read whole days here and only the edge hours
  of a range from ``usage_hourly``. Kept when raw events are purged.
- ``provider_reports``: the providers' own billing report pages (Anthropic's usage and cost
  reports, OpenAI's completions usage and costs; ``provider`` says whose), one row per page as
  fetched or imported, with its fetch time; never updated or deleted: a provider revises recent
  days, so a later fetch adds newer pages and readers take the newest per provider, report and
  day (``store.snapshots``). ``snapshot_id`` groups one provider's pages of a fetch run or of an
  imported file; ``starts_at``/``ends_at`` span the page's buckets (NULL when it has none).
- ``task_daily``, ``task_monthly``: the same sums per UTC day (month) and task key (``TASK_KEY``:
  the event's own task, its session when it named no task of its own, provider, model, user,
  team; '' for NULL), with the first and last event time of each row; written in the same
  statement/transaction as ``usage_hourly``. Task reports read them, joining ``session`` to
  ``session_context`` for the ticket (``aggregates``). Kept when raw events are purged.
- ``session_daily``: the same sums and first/last times per UTC day and session key
  (``SESSION_KEY``: the event's session whatever its task, provider, model, user, team), written
  with the others. Work-unit reports (repo, branch, pr, ticket) read it, joining ``session`` to
  ``session_context``. Kept when raw events are purged.
- ``people`` and ``tasks``: records the API maintains (compensation history, task value).
- ``session_context``: the work a session is part of (repository, branch, working tree, pull
  request, ticket), one row per session id, as Claude Code's hooks and status line report it
  (``proxy.sessions``). Reports join it to events by ``session`` at read time: the write path
  never looks it up.
- ``seats``: the subscription seat a person holds (plan name, USD per month), which
  ``tokenmeter seats`` maintains; ``usage_events.billing`` says which events a seat paid for
  (``proxy.billing``), ``api_equivalent_usd`` what they would have cost on the API.

Money and other exact quantities use ``Fixed`` (NUMERIC(20, 10)); times use ``UTCDateTime``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from proxy.store.aggregates import (
    COST_COLUMNS,
    COUNT_COLUMNS,
    ROLLUP_KEY,
    SESSION_KEY,
    SPAN_COLUMNS,
    SUMS,
    TASK_KEY,
)
from proxy.store.types import Fixed, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def _text(name: str) -> Column[str | None]:
    return Column(name, String, nullable=True)


def _tokens(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False)


def _money(name: str, nullable: bool = True) -> Column[object]:
    return Column(name, Fixed(), nullable=nullable)


usage_events = Table(
    "usage_events",
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column("ts", UTCDateTime(), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("upstream_headers_ms", Float, nullable=True),
    Column("first_token_ms", Float, nullable=True),
    Column("provider", String, nullable=False),
    Column("method", String, nullable=False),
    Column("path", String, nullable=False),
    *(_text(n) for n in ("model", "message_id", "request_id")),
    Column("status", String, nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("stream", Boolean, nullable=False),
    _text("error_type"),
    *(_text(n) for n in ("user", "team", "task", "session", "agent", "key_fingerprint")),
    Column("attribution_source", String, nullable=False),
    _text("billing"),
    *(_tokens(n) for n in COUNT_COLUMNS),
    *(_text(n) for n in ("service_tier", "inference_geo", "speed")),
    *(_money(n) for n in COST_COLUMNS),
    _text("price_version"),
    _text("catalog_model"),
    *(_text(n) for n in ("stop_reason", "usage_problem")),
    Column("iterations", Text, nullable=True),
    Index(None, "ts"),
    Index(None, "task"),
    Index(None, "user", "ts"),
    # One task's events named by no task of their own (backfilled logs): ``reports.tasks``.
    Index(
        "ix_usage_events_untasked_session",
        "session",
        postgresql_where=text("task IS NULL"),
        sqlite_where=text("task IS NULL"),
    ),
)


# Every batch updates the rows of the current hour and day: half-empty pages let PostgreSQL
# update them in place (HOT: no new index entry), measured ~15 % faster ingest.
ROLLUP_FILLFACTOR = 50


def _rollup_table(name: str, time_key: str) -> Table:
    return Table(
        name,
        metadata,
        Column(time_key, UTCDateTime(), primary_key=True),
        *(Column(n, String, primary_key=True) for n in ROLLUP_KEY[1:]),
        *(_money(s.name, nullable=False) if s.money else _tokens(s.name) for s in SUMS),
        postgresql_with={"fillfactor": ROLLUP_FILLFACTOR},
    )


usage_hourly = _rollup_table("usage_hourly", "hour")
usage_daily = _rollup_table("usage_daily", "day")


def _task_rollup_table(name: str, time_key: str) -> Table:
    return Table(
        name,
        metadata,
        Column(time_key, UTCDateTime(), primary_key=True),
        *(Column(n, String, primary_key=True) for n in TASK_KEY),
        *(_money(s.name, nullable=False) if s.money else _tokens(s.name) for s in SUMS),
        *(Column(n, UTCDateTime(), nullable=False) for n, _, _ in SPAN_COLUMNS),
        Index(None, "task"),  # a few tasks' rows (the task list's chosen rows, ROI)
        postgresql_with={"fillfactor": ROLLUP_FILLFACTOR},
    )


task_daily = _task_rollup_table("task_daily", "day")
task_monthly = _task_rollup_table("task_monthly", "month")

session_daily = Table(
    "session_daily",
    metadata,
    Column("day", UTCDateTime(), primary_key=True),
    *(Column(n, String, primary_key=True) for n in SESSION_KEY),
    *(_money(s.name, nullable=False) if s.money else _tokens(s.name) for s in SUMS),
    *(Column(n, UTCDateTime(), nullable=False) for n, _, _ in SPAN_COLUMNS),
    postgresql_with={"fillfactor": ROLLUP_FILLFACTOR},
)

people = Table(
    "people",
    metadata,
    Column("user", String, primary_key=True),
    Column("effective_from", Date, primary_key=True),
    Column("name", String, nullable=True),
    Column("team", String, nullable=True),
    Column("annual_compensation", Fixed(), nullable=True),
    Column("currency", String(3), nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String, primary_key=True),
    Column("title", String, nullable=True),
    Column("human_hours", Fixed(), nullable=True),
    Column("hourly_rate_usd", Fixed(), nullable=True),
    Column("value_usd", Fixed(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

provider_reports = Table(
    "provider_reports",
    metadata,
    Column("page_id", String(32), primary_key=True),
    Column("snapshot_id", String(32), nullable=False),
    Column("fetched_at", UTCDateTime(), nullable=False),
    Column("provider", String, nullable=False),
    Column("endpoint", String, nullable=False),
    Column("source", String, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=True),
    Column("ends_at", UTCDateTime(), nullable=True),
    Column("body", Text, nullable=False),
    Index(None, "provider", "starts_at"),
)


session_context = Table(
    "session_context",
    metadata,
    Column("session", String, primary_key=True),
    *(_text(n) for n in ("repo_host", "repo_owner", "repo_name", "branch", "worktree")),
    Column("pr", Integer, nullable=True),
    _text("ticket"),
    Column("updated_at", UTCDateTime(), nullable=False),
)


# Proxy-issued keys (proxy/credentials.py): the SHA-256 of the key, never the key; the secret
# before the last rotation stays valid until ``previous_until``.
api_keys = Table(
    "api_keys",
    metadata,
    Column("public_id", String(12), primary_key=True),
    Column("key_sha256", String(64), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("user", String, nullable=False),
    Column("team", String, nullable=True),
    Column("name", String, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("rotated_at", UTCDateTime(), nullable=True),
    Column("previous_sha256", String(64), nullable=True),
    Column("previous_until", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
)

# Every create, rotate and revoke of a key: who, when, what changed (JSON, never a secret).
api_key_audit = Table(
    "api_key_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("public_id", String(12), nullable=False),
    Column("action", String, nullable=False),
    Column("actor", String, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("detail", Text, nullable=False),
    Index(None, "public_id"),
)
# A Message Batch created through the proxy: who created it (the attribution its results are
# billed to when they are downloaded, possibly by another replica or after a restart), which
# models its requests name, how many requests it holds.
message_batches = Table(
    "message_batches",
    metadata,
    Column("batch_id", String, primary_key=True),
    Column("provider", String, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("model", String, nullable=True),
    Column("request_count", Integer, nullable=False),
    *(_text(n) for n in ("user", "team", "task", "session", "agent", "key_fingerprint")),
    Column("attribution_source", String, nullable=False),
)
seats = Table(
    "seats",
    metadata,
    Column("user", String, primary_key=True),
    Column("plan", String, nullable=True),
    Column("usd_per_month", Fixed(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


# Budgets (``proxy.budgets``): one row per (scope, name, period); name '' for the org. Counters:
# the priced spend of each budget's period (``period_start`` in UTC), added to in the same
# transaction as the usage rows (``store.budgets.count_new``); ``reserved_usd``: what the replicas'
# leases hold of it (below). Alerts: one row per threshold
# crossed per period, inserted once across replicas (the webhook's de-duplication).
budgets = Table(
    "budgets",
    metadata,
    Column("scope", String(8), primary_key=True),
    Column("name", String, primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("amount_usd", Fixed(), nullable=False),
    Column("hard", Boolean, nullable=False),
    Column("alerts", String, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

budget_counters = Table(
    "budget_counters",
    metadata,
    Column("scope", String(8), primary_key=True),
    Column("name", String, primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("period_start", UTCDateTime(), primary_key=True),
    Column("spent_usd", Fixed(), nullable=False),
    Column("reserved_usd", Fixed(), nullable=False, server_default="0"),
)

# Leases (``store.budgets.Leases``): the part of a hard budget's period each replica (``holder``,
# one per process) may spend without asking the database again. ``budget_counters.reserved_usd``
# is always the sum of a counter's holds: both change in one transaction. A hold shrinks as the
# holder's rows are committed (their cost moves to ``spent_usd``), is given back when unused, and
# is swept when its holder stops renewing it (a crashed replica).
budget_holds = Table(
    "budget_holds",
    metadata,
    Column("holder", String(32), primary_key=True),
    Column("scope", String(8), primary_key=True),
    Column("name", String, primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("period_start", UTCDateTime(), primary_key=True),
    Column("amount_usd", Fixed(), nullable=False),
    Column("renewed_at", UTCDateTime(), nullable=False),
)

budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("scope", String(8), primary_key=True),
    Column("name", String, primary_key=True),
    Column("period", String(8), primary_key=True),
    Column("period_start", UTCDateTime(), primary_key=True),
    Column("threshold", Integer, primary_key=True),
    Column("sent_at", UTCDateTime(), nullable=False),
)
