"""``tokenmeter keys fingerprint`` and ``tokenmeter reattribute``: map API keys to people.

``keys fingerprint`` reads keys from stdin (one a line; typed without echo on a terminal) and
prints each one's salted fingerprint, the id a key map uses: the key is never stored or shown.
``tokenmeter usage --by key`` lists the fingerprints seen and whether the key map names their
owner; ``reattribute --key-map FILE --since D`` gives past events of mapped keys to their owners
(``proxy.reattribution``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from proxy.cli.common import SINCE_HELP, USAGE, CliError, refused, run_with_engine, since, table
from proxy.config import Settings


def add_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API key fingerprints").add_subparsers(
        title="keys commands", metavar="COMMAND"
    )
    show = keys.add_parser("fingerprint", help="the salted fingerprint of keys read from stdin")
    show.set_defaults(handler=_fingerprint)
    again = sub.add_parser("reattribute", help="give past events of mapped keys to their owners")
    again.add_argument("--key-map", type=Path, help="JSON map (default TOKENMETER_KEY_MAP_FILE)")
    again.add_argument("--since", required=True, type=since, help=SINCE_HELP)
    again.add_argument("--dry-run", action="store_true", help="count, print, write nothing")
    again.set_defaults(handler=_reattribute)


def _read_keys() -> list[str]:
    if sys.stdin.isatty():
        return [getpass.getpass("API key (not echoed): ")]
    return [line.strip() for line in sys.stdin if line.strip()]


def _fingerprint(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.attribution import fingerprint

    keys = [key for key in _read_keys() if key]
    if not keys:
        raise CliError('keys fingerprint: no key on stdin (echo "$KEY" | tokenmeter …)', USAGE)
    for key in keys:
        print(fingerprint(key, settings.key_salt))
    return 0


def _reattribute(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.attribution import load_key_owners
    from proxy.reattribution import reattribute

    path = args.key_map or settings.key_map_file
    if path is None:
        raise CliError("reattribute: give --key-map FILE or set TOKENMETER_KEY_MAP_FILE", USAGE)
    with refused(OSError, ValueError, status=USAGE):
        owners = load_key_owners(path)
    result = run_with_engine(
        settings, lambda engine: reattribute(engine, owners, args.since, dry_run=args.dry_run)
    )
    mode = "dry run, nothing written" if args.dry_run else "written; rollups rebuilt"
    print(f"reattribute since {args.since.isoformat()} with {path} ({len(owners)} keys; {mode})")
    hours = f" in {result.hours} hours" if result.hours else ""
    print(f"{result.events} events of mapped keys: {result.changed} re-attributed{hours}")
    if result.moves:
        rows: list[tuple[str, ...]] = [("key", "from", "to", "events")]
        for (key, old, new), count in sorted(result.moves.items()):
            rows.append((key, old, new, str(count)))
        print(table(rows, left=3))
    return 0
