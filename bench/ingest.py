"""Store bench (issue 4): ingest rate through the real ``Recorder``, and a month's report.

``.venv/bin/python -m bench.ingest`` runs, on throwaway databases only:

1. **ingest**: synthetic ``UsageEvent``s (1,000 users, 30 teams, 6 models, spread over one hour,
   priced) are ``submit``-ted to a real ``Recorder`` (rows, idempotent insert, rollup upsert,
   one transaction per batch) as fast as it takes them, for each batch size, into PostgreSQL
   and SQLite. Events/s = events ÷ (first submit → last batch committed). Every run checks that
   the table holds exactly the events sent and that the rollup counts each of them once.
2. **report**: PostgreSQL is seeded with ``--events`` raw events (default 10 million) over one
   month, directly in SQL (``generate_series``), then ``rebuild_rollups``; the month's blended
   report by user (``proxy.reports.blended``) is timed from the rollup, and the same sums
   grouped by user are timed over the raw events.

The PostgreSQL database (``tokenmeter_bench_<random>`` on ``--pg``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) is dropped at the end, whatever happens.
Prints a table and writes everything to ``bench/results/ingest-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import reports
from proxy.reports.totals import sum_columns
from proxy.reports.window import conditions
from proxy.store.engine import make_engine, upgrade
from proxy.store.recorder import Recorder
from proxy.store.rollup import rebuild_rollups
from proxy.store.spool import Spool
from proxy.store.tables import usage_daily, usage_events, usage_hourly
from proxy.usage import Cost, Usage, UsageEvent, new_event_id
from tests.factories import bench_user, make_event

RESULTS = Path(__file__).resolve().parent / "results"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
USERS, TEAMS = 1000, 30
MODELS = (
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gpt-5",
    "gpt-5-mini",
    "o4-mini",
)
MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
INGEST_TARGET_PG = 20_000  # events/s
REPORT_TARGET_MS = 100.0


# -- synthetic events ---------------------------------------------------------------------------


def _cost(usage: Usage, rng: random.Random) -> Cost:
    rate = Decimal(rng.choice((3, 15, 1))) / 1_000_000
    by_kind = {
        "input": usage.input * rate,
        "cache_write_5m": usage.cache_write_5m * rate * Decimal("1.25"),
        "cache_write_1h": Decimal(0),
        "cache_read": usage.cache_read * rate / 10,
        "output": usage.output * rate * 5,
        "web_search": Decimal(0),
    }
    total = sum(by_kind.values(), Decimal(0))
    return Cost(total, by_kind, total * 3, "genai-prices bench", "bench-model")


def synthetic_event(rng: random.Random, hour: datetime) -> UsageEvent:
    """One priced Claude Code-like exchange by one of USERS people, within ``hour``."""
    user = rng.randrange(USERS)
    usage = Usage(
        input=rng.randrange(1, 500),
        cache_write_5m=rng.randrange(0, 5000),
        cache_read=rng.randrange(0, 80_000),
        output=rng.randrange(1, 2000),
    )
    model = MODELS[user % len(MODELS)]
    return make_event(
        started_at=hour + timedelta(seconds=rng.random() * 3600),
        **bench_user(user, rng, TEAMS),
        usage=usage,
        model=model,
        message_id="msg_bench",
        duration_ms=rng.random() * 30_000,
        upstream_headers_ms=90.0,
        first_token_ms=300.0,
        request_id="req_bench",
        cost=_cost(usage, rng),
    )


def synthetic_events(n: int, seed: int = 4) -> list[UsageEvent]:
    """``n`` events within the current hour, in the order they started (as a proxy sees them)."""
    rng = random.Random(seed)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = sorted((synthetic_event(rng, hour) for _ in range(n)), key=lambda e: e.started_at)
    for event in events:
        event.event_id = new_event_id()  # ids increase with time, as the proxy makes them
    return events


# -- throwaway databases ------------------------------------------------------------------------


@asynccontextmanager
async def pg_database(server: str) -> AsyncIterator[str]:
    """A fresh ``tokenmeter_bench_*`` database on ``server``, migrated; dropped afterwards."""
    name = f"tokenmeter_bench_{secrets.token_hex(4)}"
    plain = make_url(server).set(drivername="postgresql")
    admin = await asyncpg.connect(plain.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = plain.set(drivername="postgresql+asyncpg", database=name)
        rendered = url.render_as_string(hide_password=False)
        await asyncio.to_thread(upgrade, rendered)
        yield rendered
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def sqlite_database() -> AsyncIterator[str]:
    """A fresh SQLite file in a temporary directory, migrated; deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="tokenmeter-bench-") as directory:
        url = f"sqlite+aiosqlite:///{directory}/bench.db"
        await asyncio.to_thread(upgrade, url)
        yield url


def database(kind: str, pg_server: str) -> Any:
    return pg_database(pg_server) if kind == "postgres" else sqlite_database()


# -- ingest -------------------------------------------------------------------------------------


@dataclass
class Counted:
    """RecorderMetrics that counts what the recorder did, to prove nothing was spooled."""

    batches: int = 0
    rows: int = 0
    spooled: int = 0
    dropped: int = 0

    def set_queue_depth(self, n: int) -> None:
        pass

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.rows += size

    def add_spooled(self, n: int) -> None:
        self.spooled += n

    def add_dropped(self, n: int) -> None:
        self.dropped += n

    def add_replayed(self, n: int) -> None:
        pass

    def add_quarantined(self, n: int) -> None:
        self.dropped += n  # refused rows are not ingested: the run fails its check

    def add_spool_errors(self, n: int) -> None:
        pass


async def _feed(recorder: Recorder, events: Sequence[UsageEvent], chunk: int) -> None:
    """Submit as fast as the recorder takes them, keeping its queue below a few batches."""
    for start in range(0, len(events), chunk):
        while recorder.queue_depth > 4 * chunk:  # noqa: ASYNC110 (the queue has no event)
            await asyncio.sleep(0.001)
        for event in events[start : start + chunk]:
            recorder.submit(event)
        await asyncio.sleep(0)


async def _stored(engine: AsyncEngine) -> tuple[int, int, int]:
    """Raw events, and requests counted by the hourly and by the daily rollup."""
    async with engine.connect() as conn:
        raw = (await conn.execute(sa.select(sa.func.count()).select_from(usage_events))).scalar()
        hourly = (await conn.execute(sa.select(sa.func.sum(usage_hourly.c.requests)))).scalar()
        daily = (await conn.execute(sa.select(sa.func.sum(usage_daily.c.requests)))).scalar()
    return int(raw or 0), int(hourly or 0), int(daily or 0)


def postgres_cpu_s() -> float:
    """CPU seconds used so far by every local ``postgres`` process (the server is on loopback),
    so a run on a shared machine can say what the database itself spent."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")].startswith("postgres"):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def ingest(url: str, events: Sequence[UsageEvent], batch_size: int) -> dict[str, Any]:
    """Push ``events`` through a real Recorder into ``url``; the rate and what was stored."""
    engine = make_engine(url)
    metrics = Counted()
    with tempfile.TemporaryDirectory(prefix="tokenmeter-bench-spool-") as spool_dir:
        recorder = Recorder(
            engine,
            Spool(Path(spool_dir)),
            metrics,
            batch_size=batch_size,
            flush_interval_s=0.05,
            queue_max=len(events) + 1,
        )
        await recorder.start()
        cpu, pg_cpu, began = time.process_time(), postgres_cpu_s(), time.perf_counter()
        await _feed(recorder, events, batch_size)
        await recorder.stop()
        seconds = time.perf_counter() - began
        cpu, pg_cpu = time.process_time() - cpu, postgres_cpu_s() - pg_cpu
    stored = await _stored(engine)
    await engine.dispose()
    if (*stored, metrics.spooled, metrics.dropped) != (*[len(events)] * 3, 0, 0):
        raise RuntimeError(
            f"lost or double-counted events: (raw, hourly, daily) {stored} {metrics=}"
        )
    return {
        "batch_size": batch_size,
        "events": len(events),
        "seconds": round(seconds, 3),
        "events_per_s": round(len(events) / seconds),
        "batches": metrics.batches,
        "python_cpu_us_per_event": round(cpu / len(events) * 1e6, 1),
        "postgres_cpu_us_per_event": round(pg_cpu / len(events) * 1e6, 1),
    }


# -- the month's report over the rollup vs raw events -------------------------------------------

SEED_CHUNK = 1_000_000
# Each person works weekdays 08:00–17:00 UTC, mostly on one model and sometimes on a second one.
SEED_SQL = """
INSERT INTO usage_events (event_id, ts, duration_ms, provider, method, path, model, status,
    http_status, stream, "user", team, task, session, agent, attribution_source, input_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, output_tokens,
    reasoning_tokens, web_search_requests, cost_usd, sticker_usd, cost_input_usd,
    cost_cache_write_5m_usd, cost_cache_write_1h_usd, cost_cache_read_usd, cost_output_usd,
    cost_web_search_usd, price_version, catalog_model)
SELECT lpad(to_hex(g), 32, '0'),
    $3::timestamptz + make_interval(days => day, hours => hr) + make_interval(secs => sec),
    sec * 5, 'anthropic', 'POST', '/v1/messages', ($5::text[])[m + 1],
    CASE WHEN err THEN 'upstream_error' ELSE 'ok' END, CASE WHEN err THEN 529 ELSE 200 END, true,
    'user-' || lpad(u::text, 4, '0'), 'team-' || lpad((u % 30)::text, 2, '0'),
    'T-' || u || '-' || (g % 20), 's-' || u || '-' || day, 'claude-code', 'header',
    inp, cw, 0, cr, outp, 0, 0,
    (inp + cw * 1.25 + cr * 0.1 + outp * 5) * rate, (inp + cw + cr + outp * 5) * rate,
    inp * rate, cw * 1.25 * rate, 0, cr * 0.1 * rate, outp * 5 * rate, 0,
    'genai-prices bench', ($5::text[])[m + 1]
FROM (
    SELECT g, u, day, hr, sec, err, inp, cw, cr, outp, m, ($6::numeric[])[m + 1] / 1e6 AS rate
    FROM (
        SELECT g, u, ($4::int[])[1 + floor(random() * cardinality($4::int[]))::int] AS day,
            8 + floor(random() * 9)::int AS hr, random() * 3599 AS sec, random() < 0.01 AS err,
            floor(random() * 500)::bigint AS inp, floor(random() * 5000)::bigint AS cw,
            floor(random() * 80000)::bigint AS cr, floor(random() * 2000)::bigint AS outp,
            CASE WHEN random() < 0.8 THEN u % 6 ELSE (u + 3) % 6 END AS m
        FROM (SELECT g, floor(random() * 1000)::int AS u
              FROM generate_series($1::bigint, $2::bigint) AS g) AS people
    ) AS drawn
) AS priced
"""
RATES = ("5", "3", "1", "1.25", "0.25", "1.1")  # $ per MTok input, per model in MODELS order


def _weekdays() -> list[int]:
    days = (MONTH_END - MONTH_START).days
    return [d for d in range(days) if (MONTH_START + timedelta(days=d)).weekday() < 5]


async def _secondary_indexes(conn: asyncpg.Connection) -> dict[str, str]:
    """Name -> CREATE INDEX statement of every index on usage_events but its primary key."""
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_events'"
    )
    return {row["indexname"]: row["indexdef"] for row in rows if row["indexname"][:3] != "pk_"}


async def seed(url: str, events: int, progress: Callable[[str], None]) -> dict[str, float]:
    """``events`` raw events over one month, generated in PostgreSQL, then the rollup rebuilt.
    Secondary indexes are dropped during the load and rebuilt after (a bulk load's usual way)."""
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    timings: dict[str, float] = {}
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'; SELECT setseed(0.42)")
        indexes = await _secondary_indexes(conn)
        for name in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        began = time.perf_counter()
        for low in range(1, events + 1, SEED_CHUNK):
            high = min(low + SEED_CHUNK - 1, events)
            await conn.execute(SEED_SQL, low, high, MONTH_START, _weekdays(), MODELS, RATES)
            progress(f"seeded {high:,} / {events:,} raw events")
        timings["insert_s"] = time.perf_counter() - began
        began = time.perf_counter()
        for definition in indexes.values():
            await conn.execute(definition)
        timings["indexes_s"] = time.perf_counter() - began
    finally:
        await conn.close()
    timings |= await _rollup_and_analyze(url, plain, progress)
    return {name: round(seconds, 1) for name, seconds in timings.items()}


async def _rollup_and_analyze(
    url: str, plain: str, progress: Callable[[str], None]
) -> dict[str, float]:
    engine = make_engine(url)
    began = time.perf_counter()
    try:
        rollup_rows = await rebuild_rollups(engine)
    finally:
        await engine.dispose()
    rebuilt = time.perf_counter() - began
    progress(f"rollup rebuilt: {rollup_rows:,} rows in {rebuilt:.0f} s; analyzing")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute("VACUUM ANALYZE usage_events")
        await conn.execute("VACUUM ANALYZE usage_hourly")
        await conn.execute("VACUUM ANALYZE usage_daily")
        await conn.execute("VACUUM ANALYZE task_daily")
        await conn.execute("VACUUM ANALYZE task_monthly")
        await conn.execute("VACUUM ANALYZE session_daily")
        daily_rows = await conn.fetchval("SELECT count(*) FROM usage_daily")
    finally:
        await conn.close()
    return {
        "rebuild_rollups_s": rebuilt,
        "rollup_rows": float(rollup_rows),
        "daily_rows": float(daily_rows),
    }


async def _timed(run: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    await run()  # warm the cache: the report is timed as a server that is in use would answer
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = await run()
        times.append((time.perf_counter() - began) * 1000)
    return times, result


async def month_report(url: str, repeats: int) -> dict[str, Any]:
    """A month's blended report by user as the API answers it (whole days from the daily
    rollup, edge hours from the hourly one), and the same sums from the hourly rollup alone and
    over raw events."""
    engine = make_engine(url)
    filters = reports.Filters(MONTH_START, MONTH_END)
    raw_query, hourly_query = (
        sa.select(table.c.user, *sum_columns(table))
        .where(*conditions(table, filters))
        .group_by(table.c.user)
        for table in (usage_events, usage_hourly)
    )

    async def from_rollup() -> reports.Blended:
        return await reports.blended(engine, "user", filters)

    async def from_raw() -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(raw_query)).all())

    async def from_hourly() -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(hourly_query)).all())

    try:
        rollup_ms, blended = await _timed(from_rollup, repeats)
        hourly_ms, _ = await _timed(from_hourly, repeats)
        raw_ms, raw_rows = await _timed(from_raw, max(1, repeats // 3))
    finally:
        await engine.dispose()
    if len(raw_rows) != len(blended.groups):
        raise RuntimeError(f"rollup has {len(blended.groups)} users, raw {len(raw_rows)}")
    return _report_result(rollup_ms, hourly_ms, raw_ms, blended)


def _report_result(
    rollup_ms: list[float], hourly_ms: list[float], raw_ms: list[float], blended: Any
) -> dict[str, Any]:
    total = blended.total
    return {
        "users": len(blended.groups),
        "requests": total.requests,
        "cost_usd": str(total.cost_usd),
        "rollup_ms": [round(ms, 1) for ms in rollup_ms],
        "rollup_median_ms": round(statistics.median(rollup_ms), 1),
        "hourly_only_ms": [round(ms, 1) for ms in hourly_ms],
        "hourly_only_median_ms": round(statistics.median(hourly_ms), 1),
        "raw_ms": [round(ms, 1) for ms in raw_ms],
        "raw_median_ms": round(statistics.median(raw_ms), 1),
        "ratio": round(statistics.median(raw_ms) / statistics.median(rollup_ms)),
    }


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--databases", default="postgres,sqlite", help="comma list")
    parser.add_argument("--batch-sizes", default="500,1000,5000", help="comma list")
    parser.add_argument("--ingest-events", type=int, default=100_000, help="per ingest run")
    parser.add_argument("--events", type=int, default=10_000_000, help="raw events to report on")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs of the report")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server (a database on it)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/…)")
    return parser.parse_args(argv)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run_ingest(args: argparse.Namespace) -> list[dict[str, Any]]:
    _say(f"generating {args.ingest_events:,} synthetic events")
    events = synthetic_events(args.ingest_events)
    rows = []
    for kind in args.databases.split(","):
        for batch_size in (int(size) for size in args.batch_sizes.split(",")):
            async with database(kind, args.pg) as url:
                row = {"database": kind} | await ingest(url, events, batch_size)
            _say(f"ingest {kind} batch {batch_size}: {row['events_per_s']:,} events/s")
            rows.append(row)
    return rows


async def run_report(args: argparse.Namespace) -> dict[str, Any]:
    async with pg_database(args.pg) as url:
        timings = await seed(url, args.events, _say)
        _say("timing the month's blended report by user")
        return {"events": args.events, "seed": timings} | await month_report(url, args.repeats)


def print_tables(ingested: list[dict[str, Any]], report: dict[str, Any] | None) -> None:
    if ingested:
        print(
            f"{'database':<10}{'batch':>7}{'events':>10}{'seconds':>9}{'events/s':>10}"
            f"{'py cpu us/ev':>14}{'pg cpu us/ev':>14}"
        )
        for row in ingested:
            pg_cpu = row["postgres_cpu_us_per_event"] if row["database"] == "postgres" else "-"
            print(
                f"{row['database']:<10}{row['batch_size']:>7}{row['events']:>10,}"
                f"{row['seconds']:>9.2f}{row['events_per_s']:>10,}"
                f"{row['python_cpu_us_per_event']:>14}{pg_cpu:>14}"
            )
        best = max((r["events_per_s"] for r in ingested if r["database"] == "postgres"), default=0)
        print(f"target: >= {INGEST_TARGET_PG:,} events/s into PostgreSQL; best {best:,}")
    if report:
        print(
            f"\nmonth's blended report by user, {report['events']:,} raw events, "
            f"{int(report['seed']['rollup_rows']):,} hourly and "
            f"{int(report['seed']['daily_rows']):,} daily rollup rows, {report['users']} users"
        )
        print(f"  daily+hourly rollup (the API): median {report['rollup_median_ms']} ms")
        print(f"  hourly rollup alone: median {report['hourly_only_median_ms']} ms")
        print(f"  raw events: median {report['raw_median_ms']} ms {report['raw_ms']}")
        print(f"  ratio {report['ratio']}x; target < {REPORT_TARGET_MS:.0f} ms from the rollup")


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ingested = [] if args.skip_ingest else await run_ingest(args)
    report = None if args.skip_report else await run_report(args)
    print_tables(ingested, report)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"ingest-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"args": vars(args) | {"out": str(out)}, "machine": machine()}
    out.write_text(json.dumps(result | {"ingest": ingested, "report": report}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    asyncio.run(main())
