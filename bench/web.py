"""Dashboard bench (issue 20): server time per page over a seeded month in PostgreSQL.

``.venv/bin/python -m bench.web --events 1000000`` seeds a throwaway PostgreSQL database with
``bench.ingest``'s month (1,000 users, 30 teams, 6 models, 20 tasks a person; rollups rebuilt),
gives four in five people's sessions a repository (one per team: what the Tasks page's Top
repositories card shows; the fifth person's spend is unattributed), then asks each dashboard
page for that month through the real app (in process, over ASGI, so the time is the server's:
reports, rendering, no network) and prints the median of ``--repeats`` timed requests after one
warm-up. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.ingest import MONTH_END, MONTH_START, PG_SERVER, pg_database, seed
from proxy.app import create_app
from proxy.budgets import make_budget
from proxy.config import Settings
from proxy.reports import set_budget
from proxy.store.engine import make_engine

_MONTH = f"period=custom&start={MONTH_START.date()}&end={(MONTH_END - timedelta(days=1)).date()}"
PAGES = {
    "overview": f"/?{_MONTH}",
    "overview, one team": f"/?{_MONTH}&team=team-07",
    "one task": "/web/tasks/T-7-3",
    "people": f"/web/people?{_MONTH}",
    "models": f"/web/models?{_MONTH}",
    "overview CSV": f"/?{_MONTH}&format=csv",
    "tasks": f"/web/tasks?{_MONTH}",  # the task rollups; top repositories: the session rollup
    "tasks, 30 days": "/web/tasks?period=custom&start=2026-10-02&end=2026-10-31",  # not a month
    "tasks, 7 days": "/web/tasks?period=custom&start=2026-10-20&end=2026-10-26",
    "budgets": "/web/budgets",  # 1,031 budgets: every user's, every team's, the org's
    "reconcile": f"/web/reconcile?{_MONTH}",  # the proxy's side only: no provider report
}


# Every session of four in five people works in its team's repository (30 repositories).
CONTEXT_SQL = """
INSERT INTO session_context (session, repo_host, repo_owner, repo_name, branch, updated_at)
SELECT DISTINCT session, 'github.com', 'acme', 'repo-' || substr(team, 6), 'main', now()
FROM usage_events WHERE substr("user", 6)::int % 5 <> 0
"""


async def set_contexts(url: str) -> int:
    """Work context for the seeded sessions (``CONTEXT_SQL``); how many sessions got one."""
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        done = await conn.execute(CONTEXT_SQL)
        await conn.execute("ANALYZE session_context")
    finally:
        await conn.close()
    return int(done.split()[-1])


async def set_budgets(url: str, users: int = 1000, teams: int = 30) -> int:
    """A monthly hard budget per user and per team, and the org's (what the Budgets page lists);
    how many."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    found = [make_budget("org", None, "month", "100000")]
    found += [make_budget("team", f"team-{n:02d}", "month", "5000") for n in range(teams)]
    found += [make_budget("user", f"user-{n:04d}", "month", "300") for n in range(users)]
    try:
        for budget in found:
            await set_budget(engine, budget, UTC, now)
    finally:
        await engine.dispose()
    return len(found)


async def time_pages(url: str, repeats: int) -> dict[str, float]:
    app = create_app(Settings(database_url=url))
    transport = httpx.ASGITransport(app=app.web, client=("127.0.0.1", 50000))
    medians: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, path in PAGES.items():
                times = []
                for attempt in range(repeats + 1):
                    began = time.perf_counter()
                    answer = await client.get(path)
                    elapsed = (time.perf_counter() - began) * 1000
                    if answer.status_code != 200:
                        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
                    if attempt:  # the first warms the caches, as a server in use has them
                        times.append(elapsed)
                medians[name] = round(statistics.median(times), 1)
                print(f"{name:<20} {medians[name]:>9.1f} ms  ({path})", flush=True)
    finally:
        await app.parts.engine.dispose()
    return medians


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="raw events in the month")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per page")
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server (a database on it)")
    args = parser.parse_args(argv)
    async with pg_database(args.pg) as url:
        seeded = await seed(url, args.events, lambda line: print(line, flush=True))
        print(f"seeded {args.events:,} events: {seeded}", flush=True)
        print(f"set {await set_budgets(url)} budgets", flush=True)
        print(f"gave {await set_contexts(url):,} sessions a repository", flush=True)
        return {"events": args.events, "seed": seeded, "ms": await time_pages(url, args.repeats)}


if __name__ == "__main__":
    asyncio.run(main())
