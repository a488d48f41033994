"""``tokenmeter usage``: costs grouped by user, team, model, key … in the terminal, or JSON.

``--since``/``--until`` give the window; every grouping counts exactly the events in it, and the
output says which window that was. ``--by key`` lists the salted fingerprints of the API keys
seen (never a key), each with its owner in the key map (``TOKENMETER_KEY_MAP_FILE``) or ``-``:
the callers still to be mapped.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from proxy.cli.common import SINCE_HELP, refused, run_with_engine, since
from proxy.cli.common import USAGE as USAGE_STATUS
from proxy.cli.tables import USAGE, Column, footnote, keyed, render, seat_note, window_line
from proxy.config import Settings
from proxy.reports.totals import Totals
from proxy.reports.usage import GROUPS


def add_commands(sub: Any) -> None:
    report = sub.add_parser("usage", help="usage grouped by user, team, model, task, key, day …")
    report.add_argument("--by", default="user", choices=GROUPS, help="what one row is")
    report.add_argument("--since", default="30d", type=since, help=SINCE_HELP)
    report.add_argument("--until", type=since, help="end of the window (default: now)")
    report.add_argument(
        "--source",
        choices=("proxy", "backfill"),
        help="only events the proxy metered, or only those `tokenmeter backfill` read from"
        " Claude Code's transcripts (default: both; reads raw events)",
    )
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=_usage)


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    until = since(args.until) if args.until else None
    asked = reports.Filters(since(args.since), until, source=args.source)

    async def work(engine: Any) -> tuple[reports.Filters, list[tuple[str, reports.Totals]]]:
        filters = await reports.resolve(engine, asked)
        return filters, await reports.usage(engine, args.by, filters)

    with refused(reports.ReportError, status=USAGE_STATUS):  # a purged window by source
        filters, result = run_with_engine(settings, work)
    total = reports.total_of(result)
    if args.json:
        data = [{args.by: k, **t.as_json()} for k, t in result]
        out = {
            **filters.window_json(),
            "source": args.source or "all",
            "rows": data,
            "total": total.as_json(),
        }
        print(json.dumps(out, indent=2))
        return 0
    shown = f"; {args.source} events only" if args.source else ""
    print(window_line(filters) + shown)
    owners = _owners(settings) if args.by == "key" else None
    print(_table(args.by, result, total, owners))
    if note := footnote(not t.cost_complete for _, t in [*result, ("total", total)]):
        print(note)
    if note := seat_note(t for _, t in [*result, ("total", total)]):
        print(note)
    if owners is not None:
        print(_unowned_hint(result, owners))
    return 0


def _table(
    by: str, result: list[tuple[str, Totals]], total: Totals, owners: dict[str, str] | None
) -> str:
    """One row per group, then the total; with ``owners``, who holds each key (``-``: nobody
    in the key map)."""
    columns = keyed(by, USAGE)
    if owners is not None:
        held = {key: owners.get(key, "-") for key, _ in result}  # keys are fingerprints
        columns.append(Column("owner", lambda row: held.get(row[0], "")))
    return render(columns, [*result, ("total", total)])


def _owners(settings: Settings) -> dict[str, str]:
    """Key id -> "user (team)": tokenmeter keys' owners, and the configured key map's."""
    from proxy import apikeys
    from proxy.attribution import load_key_owners

    issued = run_with_engine(settings, apikeys.list_keys)
    held = {k.label: f"{k.user} ({k.team})" if k.team else k.user for k in issued}
    if settings.key_map_file is None:
        return held
    with refused(OSError, ValueError, status=2):
        owners = load_key_owners(settings.key_map_file)
    return held | {fp: f"{o.user} ({o.team})" if o.team else o.user for fp, o in owners.items()}


def _unowned_hint(result: list[tuple[str, Any]], owners: dict[str, str]) -> str:
    unowned = [key for key, _ in result if key.startswith("fp_") and key not in owners]
    if not unowned:
        return "every key seen has an owner (a tokenmeter key's, or one in the key map)"
    return (
        f"{len(unowned)} key(s) without an owner: map them in TOKENMETER_KEY_MAP_FILE, then "
        "tokenmeter reattribute --since DATE gives their past usage to the owner"
    )
