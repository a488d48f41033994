"""``tokenmeter serve`` and ``tokenmeter db …``: run the proxy, operate its database."""

from __future__ import annotations

import argparse
import os
import shutil
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


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from proxy.app import SERVER_OPTIONS
    from proxy.store.engine import upgrade

    if settings.migrate_on_start:
        upgrade(settings.database_url)  # once, before workers start
        os.environ["TOKENMETER_MIGRATE_ON_START"] = "false"
    own_dir = None
    if settings.workers > 1 and settings.prometheus_multiproc_dir is None:
        # Workers are separate processes: their counters meet in prometheus_client's
        # multiprocess files, which must exist before any worker imports prometheus_client.
        own_dir = tempfile.mkdtemp(prefix="tokenmeter-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        uvicorn.run(
            "proxy.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            access_log=False,  # one log line per agent turn costs more CPU than the metering
            log_level="info",
            timeout_graceful_shutdown=30,
            **SERVER_OPTIONS,
        )
    finally:
        if own_dir is not None:  # a directory the user chose is theirs to keep
            shutil.rmtree(own_dir, ignore_errors=True)
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
