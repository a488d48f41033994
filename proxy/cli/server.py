"""``tokenmeter serve`` and ``tokenmeter db …``: run the proxy, operate its database.

``serve`` and ``db upgrade`` are the only commands that create a database (the default one's
directory included); every other command needs it to exist already. ``serve`` checks the files
its settings name (prices, key map) before starting, so a bad one is one line, not a traceback in
a worker; it logs a start-up summary and, with ``TOKENMETER_ACCESS_LOG=json``, one JSON line per
exchange on stdout. Every logger of the proxy is under ``tokenmeter.`` (``proxy.store.recorder``
logs as ``tokenmeter.store.recorder``), so one entry of the log config routes them all.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import tempfile
from typing import Any

from proxy.cli.common import (
    CliError,
    refused,
    revisions,
    run_with_engine,
    shown,
    shown_url,
    sqlite_path,
)
from proxy.config import Settings, ensure_data_dir, env_name


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", default=argparse.SUPPRESS, help="listen address")
    serve.add_argument("--port", type=int, default=argparse.SUPPRESS, help="listen port")
    serve.add_argument("--workers", type=int, default=argparse.SUPPRESS, help="processes")
    serve.set_defaults(handler=_serve, creates_database=True)
    db = sub.add_parser("db", help="database operations").add_subparsers(
        title="db commands", metavar="COMMAND"
    )
    upgrade = db.add_parser("upgrade", help="create the database or apply new migrations")
    upgrade.set_defaults(handler=_db_upgrade, creates_database=True)
    db.add_parser("current", help="show the applied revision").set_defaults(handler=_db_current)
    rebuild = db.add_parser("rebuild-rollups", help="recompute the hourly rollup from raw events")
    rebuild.set_defaults(handler=_db_rebuild)
    purge = db.add_parser("purge", help="drop raw events older than N days (rollup kept)")
    purge.add_argument("--older-than-days", type=_positive, required=True, metavar="N")
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


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days (1 or more)")
    return int(text)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from proxy.serving import SERVER_OPTIONS

    _check_files(settings)
    if settings.migrate_on_start:
        _upgrade(settings)  # once, before workers start
    # The workers read their settings themselves: hand them what this command line decided.
    for name, value in args.settings_overrides.items():
        os.environ[env_name(name)] = str(value)
    os.environ["TOKENMETER_MIGRATE_ON_START"] = "false"  # done above, or not wanted
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
            access_log=False,  # uvicorn's; tokenmeter's own is TOKENMETER_ACCESS_LOG
            log_config=_log_config(),
            log_level="info",
            # SIGTERM: open exchanges (streams) get this long to finish, then the recorder
            # flushes.
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
            **SERVER_OPTIONS,
        )
    finally:
        if own_dir is not None:  # a directory the user chose is theirs to keep
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus tokenmeter's: every ``tokenmeter.*`` message as uvicorn's, at INFO
    and above; the access log (``tokenmeter.access``) bare, on stdout."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["bare"] = {"format": "%(message)s"}
    config["handlers"]["stdout"] = {
        "formatter": "bare",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["tokenmeter"] = {"handlers": ["default"], "level": "INFO"}
    config["loggers"]["tokenmeter.access"] = {
        "handlers": ["stdout"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def _check_files(settings: Settings) -> None:
    """Read the prices and key-map files now: a bad one stops ``serve`` with one line."""
    from proxy.attribution import load_key_owners
    from proxy.pricing import load_overrides
    from proxy.pricing.overrides import OverridesError

    if settings.prices_file is not None:
        with refused(OverridesError, status=2):
            load_overrides(settings.prices_file)
    if settings.key_map_file is not None:
        with refused(OSError, ValueError, status=2):
            load_key_owners(settings.key_map_file)


def _upgrade(settings: Settings) -> tuple[str | None, str | None]:
    """Migrate to the latest revision, creating the database (and the default one's
    directory); returns the revisions before and after."""
    from proxy.store.engine import current, upgrade

    path = sqlite_path(settings.database_url)
    ensure_data_dir(settings.database_url)
    if path is not None and not path.parent.is_dir():
        raise CliError(f"cannot create {shown(path)}: directory {shown(path.parent)} is missing")
    try:
        before = current(settings.database_url)
        upgrade(settings.database_url)
        return before, current(settings.database_url)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"cannot migrate {shown_url(settings.database_url)}: {reason}") from exc


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    before, after = _upgrade(settings)
    where = shown_url(settings.database_url)
    if before == after:
        print(f"{where} was already at the latest revision ({after})")
    else:
        print(f"{where} upgraded from {before or '(empty)'} to {after}")
    return 0


def _db_current(args: argparse.Namespace, settings: Settings) -> int:
    async def read(engine: Any) -> tuple[str | None, str | None]:
        return await revisions(engine, settings)

    have, latest = run_with_engine(settings, read, migrated=False)
    if have is None:
        print(f"(empty: no migration applied; the latest is {latest})")
    else:
        print(f"{have} ({'the latest' if have == latest else f'the latest is {latest}'})")
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
