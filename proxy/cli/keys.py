"""``tokenmeter keys …`` and ``tokenmeter reattribute``: proxy-issued keys, and API keys mapped
to people.

``keys create --user U [--team T] [--name N] [--expires 90d]`` prints a new key once
(``tmk_<public id>_<secret>``; the database keeps its SHA-256 and last 4 characters);
``keys list``, ``keys revoke ID`` and ``keys rotate ID [--grace 24h]`` (a new secret on the same
id, the old one valid for the grace period) manage them; ``keys audit`` shows who did what.
Every running proxy sees a change within ``TOKENMETER_KEY_CACHE_S`` (``proxy.apikeys``).

``keys fingerprint`` reads keys from stdin (one a line; typed without echo on a terminal) and
prints each one's salted fingerprint, the id a key map uses: the key is never stored or shown.
``tokenmeter usage --by key`` lists the fingerprints seen and whether the key map names their
owner; ``reattribute --key-map FILE --since D`` gives past events of mapped keys to their owners
(``proxy.reattribution``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.cli.common import SINCE_HELP, USAGE, CliError, refused, run_with_engine, since, table
from proxy.cli.tables import Column, render
from proxy.config import Settings

if TYPE_CHECKING:
    from proxy.apikeys import KeyInfo

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
DEFAULT_GRACE = "24h"


def add_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="proxy-issued keys, API key fingerprints").add_subparsers(
        title="keys commands", metavar="COMMAND"
    )
    make = keys.add_parser("create", help="a new tokenmeter key for a person (printed once)")
    make.add_argument("--user", required=True, help="who the key's requests are billed to")
    make.add_argument("--team", help="their team")
    make.add_argument("--name", help="a label for the key (e.g. laptop)")
    make.add_argument("--expires", type=duration, help="lifetime: 90d, 12h, 30m (default none)")
    make.add_argument("--json", action="store_true", help="print JSON")
    make.set_defaults(handler=_create)
    listing = keys.add_parser("list", help="every key: owner, last 4, state, last use")
    listing.add_argument("--user", help="only this person's keys")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)
    end = keys.add_parser("revoke", help="end a key now (every proxy within the cache interval)")
    end.add_argument("id", help="the key's id, tmk_<public id> (as keys list shows it)")
    end.set_defaults(handler=_revoke)
    turn = keys.add_parser("rotate", help="a new secret on the same id; the old one for a grace")
    turn.add_argument("id", help="the key's id, tmk_<public id>")
    turn.add_argument("--grace", type=duration, default=DEFAULT_GRACE, help="default 24h")
    turn.add_argument("--json", action="store_true", help="print JSON")
    turn.set_defaults(handler=_rotate)
    audit = keys.add_parser("audit", help="every create, rotate and revoke: who, when, what")
    audit.add_argument("id", nargs="?", help="only this key's")
    audit.set_defaults(handler=_audit)
    show = keys.add_parser("fingerprint", help="the salted fingerprint of keys read from stdin")
    show.set_defaults(handler=_fingerprint)
    again = sub.add_parser("reattribute", help="give past events of mapped keys to their owners")
    again.add_argument("--key-map", type=Path, help="JSON map (default TOKENMETER_KEY_MAP_FILE)")
    again.add_argument("--since", required=True, type=since, help=SINCE_HELP)
    again.add_argument("--dry-run", action="store_true", help="count, print, write nothing")
    again.set_defaults(handler=_reattribute)


def duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``: an argparse type."""
    if text[-1:] in _UNITS and text[:-1].isdigit() and int(text[:-1]) > 0:
        return int(text[:-1]) * _UNITS[text[-1]]
    raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use 90d, 12h or 30m")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import apikeys

    with refused(apikeys.KeyProblem, status=USAGE):
        issued = run_with_engine(
            settings,
            lambda engine: apikeys.create_key(
                engine, args.user, args.team, args.name, args.expires, actor=_actor()
            ),
        )
    _show_issued(issued, args.json, "created")
    return 0


def _show_issued(issued: Any, as_json: bool, verb: str) -> None:
    info = issued.info
    if as_json:
        print(json.dumps({"key": issued.key, **info.as_json(datetime.now(UTC))}, indent=2))
        return
    print(issued.key)
    team = f" ({info.team})" if info.team else ""
    expires = f", expires {_time(info.expires_at)}" if info.expires_at else ""
    print(
        f"{verb} {info.label} for {info.user}{team}{expires}: this is the only time the key is "
        "shown; the proxy accepts it within TOKENMETER_KEY_CACHE_S",
        file=sys.stderr,
    )


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import apikeys

    found = run_with_engine(settings, lambda engine: apikeys.list_keys(engine, args.user))
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([info.as_json(now) for info in found], indent=2))
        return 0
    print(render(_columns(now), found, left=4))
    return 0


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def _columns(now: datetime) -> list[Column[KeyInfo]]:
    return [
        Column("id", lambda k: k.label),
        Column("user", lambda k: k.user),
        Column("team", lambda k: k.team or ""),
        Column("name", lambda k: k.name or ""),
        Column("key", lambda k: f"…{k.last4}"),
        Column("state", lambda k: k.state(now)),
        Column("created", lambda k: _time(k.created_at)),
        Column("expires", lambda k: _time(k.expires_at)),
        Column("last used", lambda k: _time(k.last_used_at)),
    ]


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import apikeys

    with refused(apikeys.KeyProblem):
        info = run_with_engine(
            settings, lambda engine: apikeys.revoke_key(engine, args.id, actor=_actor())
        )
    print(
        f"revoked {info.label} ({info.user}) at {_time(info.revoked_at)} UTC; every proxy "
        f"refuses it within {settings.key_cache_s:g} s (TOKENMETER_KEY_CACHE_S)"
    )
    return 0


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import apikeys

    with refused(apikeys.KeyProblem):
        issued = run_with_engine(
            settings,
            lambda engine: apikeys.rotate_key(engine, args.id, args.grace, actor=_actor()),
        )
    _show_issued(issued, args.json, "rotated")
    if not args.json:
        until = _time(issued.info.previous_until)
        print(f"the old secret of {issued.info.label} works until {until} UTC", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import apikeys

    rows = run_with_engine(settings, lambda engine: apikeys.audit_log(engine, args.id))
    for row in rows:
        detail = json.dumps(row["detail"], sort_keys=True)
        print(f"{row['at']}  {row['id']}  {row['action']:<6}  {row['actor']}  {detail}")
    return 0


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
