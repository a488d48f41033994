"""``tokenmeter serve`` and ``tokenmeter db …``: run the proxy, operate its database."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from typing import Any

from proxy.cli.common import run_with_engine
from proxy.config import Settings


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", help="listen address (TOKENMETER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (TOKENMETER_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (TOKENMETER_WORKERS)")
    serve.set_defaults(handler=_serve)
    db = sub.add_parser("db", help="database operations").add_subparsers(title="db commands")
    db.add_parser("upgrade", help="apply all migrations").set_defaults(handler=_db_upgrade)
    db.add_parser("current", help="show the applied revision").set_defaults(handler=_db_current)
    rebuild = db.add_parser("rebuild-rollups", help="recompute the hourly rollup from raw events")
    rebuild.set_defaults(handler=_db_rebuild)
    purge = db.add_parser("purge", help="drop raw events older than N days (rollup kept)")
    purge.add_argument("--older-than-days", type=int, required=True)
    purge.set_defaults(handler=_db_purge)
    quarantine = db.add_parser(
        "quarantine", help="usage events the database refused (in the spool directory)"
    ).add_subparsers(title="quarantine commands")
    listing = quarantine.add_parser("list", help="show every quarantined event and why")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_quarantine_list)
    replay = quarantine.add_parser(
        "replay", help="write quarantined events again; those still refused stay"
    )
    replay.set_defaults(handler=_quarantine_replay)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from proxy.app import SERVER_OPTIONS
    from proxy.store.engine import upgrade

    if settings.migrate_on_start:
        upgrade(settings.database_url)  # once, before workers start
        os.environ["TOKENMETER_MIGRATE_ON_START"] = "false"
    if settings.workers > 1 and settings.prometheus_multiproc_dir is None:
        # Workers are separate processes: their counters meet in prometheus_client's
        # multiprocess files, which must exist before any worker imports prometheus_client.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tokenmeter-metrics-")
    uvicorn.run(
        "proxy.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,  # one log line per agent turn costs more CPU than the metering
        log_level="info",
        # SIGTERM: open exchanges (streams) get this long to finish, then the recorder flushes.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        **SERVER_OPTIONS,
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

    rows = run_with_engine(settings, rebuild_rollups)
    print(f"rollup rebuilt from raw events ({rows} hourly rows)")
    return 0


def _db_purge(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.store.rollup import purge_raw

    days = args.older_than_days
    removed = run_with_engine(settings, lambda engine: purge_raw(engine, days))
    print(f"removed {removed} raw events older than {days} days; the rollup keeps their totals")
    return 0


def _quarantine_list(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.cli.quarantine import show

    print(show(settings, as_json=args.json))
    return 0


def _quarantine_replay(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.cli.quarantine import replay

    written, kept = replay(settings)
    print(f"{written} event(s) written to the database; {kept} still in quarantine")
    return 0 if kept == 0 else 1
