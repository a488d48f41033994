"""``tokenmeter task show`` and ``tokenmeter usage``: costs in the terminal, or JSON for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from proxy.cli.common import run_with_engine, since, table
from proxy.config import Settings


def add_commands(sub: Any) -> None:
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


def _task_show(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    view = run_with_engine(settings, lambda engine: reports.task_view(engine, args.task_id))
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
    print(table(rows))
    return 0


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
