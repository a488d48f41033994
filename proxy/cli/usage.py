"""``tokenmeter usage``: costs grouped by user, team, model, key … in the terminal, or JSON.

``--by key`` lists the salted fingerprints of the API keys seen (never a key), each with its owner
in the key map (``TOKENMETER_KEY_MAP_FILE``) or ``-``: the callers still to be mapped.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from typing import Any

from proxy.cli.common import SINCE_HELP, refused, run_with_engine, since, table
from proxy.config import Settings
from proxy.reports.usage import GROUPS


def add_commands(sub: Any) -> None:
    report = sub.add_parser("usage", help="usage grouped by user, team, model, task, key, day …")
    report.add_argument("--by", default="user", choices=GROUPS, help="what one row is")
    report.add_argument("--since", default="30d", type=since, help=SINCE_HELP)
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=_usage)


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    filters = reports.Filters(start=since(args.since))
    result = run_with_engine(settings, lambda engine: reports.usage(engine, args.by, filters))
    total = reports.total_of(result)
    if args.json:
        out = {"rows": [{args.by: k, **t.as_json()} for k, t in result], "total": total.as_json()}
        print(json.dumps(out, indent=2))
        return 0
    owners = _owners(settings) if args.by == "key" else None
    extra = ("owner",) if owners is not None else ()
    rows: list[tuple[str, ...]] = [(args.by, *_HEADINGS, *extra)]
    for key, totals in result:
        owner = () if owners is None else (owners.get(key, "-"),)
        rows.append((key, *_cells(totals.as_json()), *owner))
    rows.append(("total", *_cells(total.as_json()), *("" for _ in extra)))
    print(table(rows))
    if owners is not None:
        print(_unowned_hint(result, owners))
    return 0


_HEADINGS = ("requests", "tokens", "cache hit", "cost $", "sticker $", "$/MTok")


def _cells(data: dict[str, Any]) -> tuple[str, ...]:
    hit = data["cache_hit_rate"]
    return (
        str(data["requests"]),
        f"{data['total_tokens']:,}",
        "-" if hit is None else f"{Decimal(hit):.1%}",
        data["cost_usd"],
        data["sticker_usd"],
        data["blended_usd_per_mtok"] or "-",
    )


def _owners(settings: Settings) -> dict[str, str]:
    """Fingerprint -> "user (team)" from the configured key map ({} without one)."""
    from proxy.attribution import load_key_owners

    if settings.key_map_file is None:
        return {}
    with refused(OSError, ValueError, status=2):
        owners = load_key_owners(settings.key_map_file)
    return {fp: f"{o.user} ({o.team})" if o.team else o.user for fp, o in owners.items()}


def _unowned_hint(result: list[tuple[str, Any]], owners: dict[str, str]) -> str:
    unowned = [key for key, _ in result if key.startswith("fp_") and key not in owners]
    if not unowned:
        return "every key seen has an owner in the key map"
    return (
        f"{len(unowned)} key(s) without an owner: map them in TOKENMETER_KEY_MAP_FILE, then "
        "tokenmeter reattribute --since DATE gives their past usage to the owner"
    )
