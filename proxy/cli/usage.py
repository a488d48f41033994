"""``tokenmeter usage``: costs grouped by user, team, model … in the terminal, or JSON.

``--since``/``--until`` give the window; every grouping counts exactly the events in it, and the
output says which window that was."""

from __future__ import annotations

import argparse
import json
from typing import Any

from proxy.cli.common import dollars, footnote, run_with_engine, since, table
from proxy.config import Settings


def add_commands(sub: Any) -> None:
    report = sub.add_parser("usage", help="usage grouped by user, team, model, task, day …")
    report.add_argument("--by", default="user", help="user|team|model|provider|task|session|day")
    report.add_argument("--since", default="30d", help="e.g. 7d, 24h, or an ISO date")
    report.add_argument("--until", help="end of the window (default: now), e.g. an ISO time")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=_usage)


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    asked = reports.Filters(since(args.since), since(args.until) if args.until else None)

    async def work(engine: Any) -> tuple[reports.Filters, list[tuple[str, reports.Totals]]]:
        filters = await reports.resolve(engine, asked)
        return filters, await reports.usage(engine, args.by, filters)

    filters, result = run_with_engine(settings, work)
    total = reports.total_of(result).as_json()
    data = [{args.by: k, **t.as_json()} for k, t in result]
    if args.json:
        out = {**filters.window_json(), "rows": data, "total": total}
        print(json.dumps(out, indent=2))
        return 0
    window = filters.window_json()
    print(f"window {window['start'] or 'the beginning'} .. {window['end'] or 'now'}")
    rows: list[tuple[str, ...]] = [(args.by, *_HEADINGS)]
    rows += [(row[args.by], *_cells(row)) for row in data]
    rows.append(("total", *_cells(total)))
    print(table(rows))
    if note := footnote([*data, total]):
        print(note)
    return 0


_HEADINGS = ("requests", "tokens", "cache hit", "cost $", "sticker $", "$/MTok")


def _cells(data: dict[str, Any]) -> tuple[str, ...]:
    hit = data["cache_hit_rate"]
    return (
        str(data["requests"]),
        f"{data['total_tokens']:,}",
        "-" if hit is None else f"{hit:.1%}",
        dollars(data, "cost_usd"),
        dollars(data, "sticker_usd"),
        dollars(data, "blended_usd_per_mtok"),
    )
