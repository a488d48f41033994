"""The ``tokenmeter`` command: serve the proxy, run migrations, read costs from the terminal.

Plain argparse, plain aligned tables, ``--json`` for scripts. Every subcommand reads the same
``TOKENMETER_*`` settings as the server, so ``tokenmeter task show ID`` reads the database that
``tokenmeter serve`` writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    _apply_overrides(args)
    handler: Handler = args.handler
    return handler(args, Settings())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenmeter", description=__doc__)
    sub = parser.add_subparsers(title="commands")
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", help="listen address (TOKENMETER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (TOKENMETER_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (TOKENMETER_WORKERS)")
    serve.set_defaults(handler=_serve)
    _add_db(sub)
    _add_reports(sub)
    return parser


def _add_db(sub: Any) -> None:
    db = sub.add_parser("db", help="database operations").add_subparsers(title="db commands")
    db.add_parser("upgrade", help="apply all migrations").set_defaults(handler=_db_upgrade)
    db.add_parser("current", help="show the applied revision").set_defaults(handler=_db_current)
    rebuild = db.add_parser("rebuild-rollups", help="recompute the hourly rollup from raw events")
    rebuild.set_defaults(handler=_db_rebuild)
    purge = db.add_parser("purge", help="drop raw events older than N days (rollup kept)")
    purge.add_argument("--older-than-days", type=int, required=True)
    purge.set_defaults(handler=_db_purge)


def _add_reports(sub: Any) -> None:
    task = sub.add_parser("task", help="one task").add_subparsers(title="task commands")
    show = task.add_parser("show", help="a task's tokens, dollars and blended $/MTok")
    show.add_argument("task_id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_task_show)
    report = sub.add_parser("usage", help="usage grouped by user, team, model, task, day …")
    report.add_argument("--by", default="user", help="user|team|model|provider|task|session|day")
    report.add_argument("--since", default="30d", help="e.g. 7d, 24h, or an ISO date")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=_usage)


def _apply_overrides(args: argparse.Namespace) -> None:
    for name in ("host", "port", "workers"):
        value = getattr(args, name, None)
        if value is not None:
            os.environ[f"TOKENMETER_{name.upper()}"] = str(value)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from proxy.store.engine import upgrade

    if settings.migrate_on_start:
        upgrade(settings.database_url)  # once, before workers fork
        os.environ["TOKENMETER_MIGRATE_ON_START"] = "false"
    uvicorn.run(
        "proxy.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,  # one log line per agent turn costs more CPU than the metering
        log_level="info",
        timeout_graceful_shutdown=30,
    )
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.store.engine import upgrade

    upgrade(settings.database_url)
    print("database is at the latest revision")
    return 0


def _db_current(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.store.engine import current

    print(current(settings.database_url) or "(empty: no migration applied)")
    return 0


def _db_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.store.rollup import rebuild_rollups

    rows = _run_with_engine(settings, rebuild_rollups)
    print(f"rollup rebuilt from raw events ({rows} hourly rows)")
    return 0


def _db_purge(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.store.rollup import purge_raw

    days = args.older_than_days
    removed = _run_with_engine(settings, lambda engine: purge_raw(engine, days))
    print(f"removed {removed} raw events older than {days} days; the rollup keeps their totals")
    return 0


def _task_show(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    view = _run_with_engine(settings, lambda engine: reports.task_view(engine, args.task_id))
    if view is None:
        print(f"no usage recorded for task {args.task_id!r}", file=sys.stderr)
        return 1
    data = view.as_json()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"task {view.task_id}: {view.totals.requests} requests, users {', '.join(view.users)}")
    print(f"  {data['first_seen']} … {data['last_seen']}")
    rows: list[tuple[str, ...]] = [("model", *_HEADINGS)]
    rows += [(m, *_cells(t.as_json())) for m, t in view.by_model.items()]
    rows.append(("total", *_cells(data)))
    print(_table(rows))
    return 0


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    filters = reports.Filters(start=_since(args.since))
    result = _run_with_engine(settings, lambda engine: reports.usage(engine, args.by, filters))
    total = reports.total_of(result)
    if args.json:
        out = {"rows": [{args.by: k, **t.as_json()} for k, t in result], "total": total.as_json()}
        print(json.dumps(out, indent=2))
        return 0
    rows: list[tuple[str, ...]] = [(args.by, *_HEADINGS)]
    rows += [(k, *_cells(t.as_json())) for k, t in result]
    rows.append(("total", *_cells(total.as_json())))
    print(_table(rows))
    return 0


_HEADINGS = ("requests", "tokens", "cache hit", "cost $", "sticker $", "$/MTok")


def _cells(data: dict[str, Any]) -> tuple[str, ...]:
    hit = data["cache_hit_rate"]
    return (
        str(data["requests"]),
        f"{data['total_tokens']:,}",
        "-" if hit is None else f"{hit:.1%}",
        data["cost_usd"],
        data["sticker_usd"],
        data["blended_usd_per_mtok"] or "-",
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _since(text: str) -> datetime:
    now = datetime.now(UTC)
    units = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}
    if text[-1:] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run_with_engine(settings: Settings, work: Callable[[Any], Any]) -> Any:
    from proxy.store.engine import make_engine

    async def run() -> Any:
        engine = make_engine(settings.database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
