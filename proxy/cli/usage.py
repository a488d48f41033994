"""``tokenmeter usage``: costs grouped by user, team, model … in the terminal, or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from proxy.cli.common import run_with_engine, since, table
from proxy.config import Settings


def add_commands(sub: Any) -> None:
    report = sub.add_parser("usage", help="usage grouped by user, team, model, task, day …")
    report.add_argument("--by", default="user", help="user|team|model|provider|task|session|day")
    report.add_argument("--since", default="30d", help="e.g. 7d, 24h, or an ISO date")
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
    rows: list[tuple[str, ...]] = [(args.by, *_HEADINGS)]
    rows += [(k, *_cells(t.as_json())) for k, t in result]
    rows.append(("total", *_cells(total.as_json())))
    print(table(rows))
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
