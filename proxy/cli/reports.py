"""``tokenmeter report …`` and ``tokenmeter task …``: the reports in the terminal, or JSON.

``report blended|people|tasks|roi|distribution`` print aligned tables; ``--json`` prints what the
REST API answers. ``blended``, ``tasks`` and ``roi`` take ``--since``/``--until`` and count
exactly the events in that window, as ``tokenmeter usage`` does; a dollar figure is ``?`` when
unknown and ends in ``*`` when it covers priced requests only (a legend says so).
``task show ID`` gives one task's cost and ROI; ``task set ID`` records what the
work was worth (hours × rate, or a value) so the ROI can be computed.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from proxy.cli.common import (
    SINCE_HELP,
    USAGE,
    CliError,
    dollars,
    footnote,
    refused,
    run_with_engine,
    since,
    table,
)
from proxy.config import Settings

if TYPE_CHECKING:
    from proxy.reports import Window

Rows = list[tuple[str, ...]]


def add_commands(sub: Any) -> None:
    from proxy.reports import BLENDED_GROUPS, METRICS, SORTS

    report = sub.add_parser("report", help="blended $/MTok, spend vs pay, tasks, ROI, spread")
    kinds = report.add_subparsers(title="reports", metavar="REPORT")
    for name, handler, text in (
        ("blended", _blended, "real vs sticker $/MTok and cache savings"),
        ("people", _people, "annualized spend vs compensation per person, team, org"),
        ("tasks", _tasks, "tasks by cost or ROI"),
        ("roi", _roi, "tasks with a value: cost, value, ROI"),
        ("distribution", _distribution, "percentiles, top-N share, Gini across people"),
    ):
        parser = kinds.add_parser(name, help=text)
        parser.add_argument("--since", default="30d", type=since, help=SINCE_HELP)
        if name in {"blended", "tasks", "roi"}:
            parser.add_argument("--until", type=since, help="end of the window (default: now)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=handler)
        if name == "blended":
            parser.add_argument("--by", default="model", choices=BLENDED_GROUPS)
        if name == "tasks":
            parser.add_argument("--sort", default="cost", choices=SORTS)
            parser.add_argument("--limit", type=_count, default=20, help="rows at most")
        if name == "distribution":
            parser.add_argument("--metric", default="tokens", choices=METRICS)
    _add_task_commands(sub)


_CLEARABLE = {"title": "title", "hours": "human_hours", "rate": "hourly_rate_usd"}
_CLEARABLE["value"] = "value_usd"


def _add_task_commands(sub: Any) -> None:
    task = sub.add_parser("task", help="one task").add_subparsers(
        title="task commands", metavar="COMMAND"
    )
    show = task.add_parser("show", help="a task's tokens, dollars, blended $/MTok and ROI")
    show.add_argument("task_id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_task_show)
    put = task.add_parser("set", help="record what a task was worth, for its ROI")
    put.add_argument("task_id")
    put.add_argument("--title")
    put.add_argument("--hours", type=_decimal, help="estimated human hours for the same work")
    put.add_argument("--rate", type=_decimal, help="loaded hourly rate in USD")
    put.add_argument("--value", type=_decimal, help="or: the work's value in USD")
    put.add_argument(
        "--clear", action="append", choices=_CLEARABLE, default=[], help="forget a field"
    )
    put.set_defaults(handler=_task_set)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (1 or more)")
    return int(text)


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more, like 24 or 120.5")
    return value


def _window(text: str | datetime) -> Window:
    """The window from ``--since`` to now, its length rounded to whole seconds (so ``30d`` is
    exactly 30 days, not 30 days and the milliseconds between two clock reads)."""
    from proxy import reports

    start = since(text)
    span = datetime.now(UTC) - start
    return reports.Window(start, start + timedelta(seconds=round(span.total_seconds())))


def _print(data: Any, args: argparse.Namespace, rows: Rows, marked: Any = ()) -> int:
    """``data`` as JSON, or ``rows`` as a table with the legend of ``marked``'s dollar marks."""
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(table(rows))
    if note := footnote(list(marked)):
        print(note)
    return 0


def _filters(args: argparse.Namespace) -> Any:
    from proxy import reports

    return reports.Filters(since(args.since), since(args.until) if args.until else None)


def _in_window(settings: Settings, args: argparse.Namespace, report: Any) -> Any:
    """``report(engine, filters)`` over the window of ``--since``/``--until``, as resolved."""
    from proxy import reports

    async def work(engine: Any) -> Any:
        return await report(engine, await reports.resolve(engine, _filters(args)))

    return _run(settings, work)


def _window_line(data: dict[str, Any]) -> str:
    return f"window {data['start'] or 'the beginning'} .. {data['end'] or 'now'}"


def _run(settings: Settings, work: Any) -> Any:
    from proxy import reports

    with refused(reports.ReportError, status=USAGE):
        return run_with_engine(settings, work)


_BLENDED: tuple[str, ...] = ("requests", "tokens", "in:out", "cache hit", "cost $", "sticker $")
_BLENDED += ("saved", "$/MTok", "sticker $/MTok")


def _blended_cells(key: str, d: dict[str, Any]) -> tuple[str, ...]:
    hit, discount = d["cache_hit_rate"], d["cache_discount"]
    return (
        key,
        str(d["requests"]),
        f"{d['total_tokens']:,}",
        d["input_output_ratio"] or "-",
        "-" if hit is None else f"{Decimal(hit):.1%}",
        dollars(d, "cost_usd"),
        dollars(d, "sticker_usd"),
        "-" if discount is None else f"{Decimal(discount):.1%}",
        dollars(d, "blended_usd_per_mtok"),
        dollars(d, "sticker_usd_per_mtok"),
    )


def _blended(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    found = _in_window(settings, args, lambda e, f: reports.blended(e, args.by, f))
    data = found.as_json()
    rows: Rows = [(args.by, *_BLENDED)]
    rows += [_blended_cells(row[args.by], row) for row in data["rows"]]
    rows.append(_blended_cells("total", data["total"]))
    if not args.json:
        print(_window_line(data))
    return _print(data, args, rows, [*data["rows"], data["total"]])


_PEOPLE = ("team", "compensation", "spend $", "annualized $", "spend/comp", "tokens/month")


def _people_cells(key: str, team: str, pay: str, d: dict[str, Any]) -> tuple[str, ...]:
    ratio = d["spend_to_compensation"]
    monthly = d["tokens_per_person_per_month"]
    spend = {"cost_usd": d["spend_usd"], "cost_complete": d["spend_complete"], **d}
    return (
        key,
        team,
        pay,
        dollars(spend, "cost_usd"),
        dollars(spend, "annualized_spend_usd"),
        "-" if ratio is None else f"{Decimal(ratio):.2%}",
        "-" if monthly is None else f"{monthly:,}",
    )


def _people(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    window = _window(args.since)
    usd_per = settings.usd_per_currency
    found = _run(settings, lambda e: reports.compensation_report(e, window, usd_per))
    data = found.as_json()
    rows: Rows = [("user", *_PEOPLE)]
    for p in data["people"]:
        pay = f"{p['annual_compensation']} {p['currency']}" if p["currency"] else "-"
        rows.append(_people_cells(p["user"], p["team"], pay, p))
    rows.append(("", "", "", "", "", "", ""))
    rows += [
        _people_cells("team " + t["team"], "", f"{t['annual_compensation_usd']} USD", t)
        for t in data["teams"]
    ]
    org = data["org"]
    rows.append(_people_cells("org", "", f"{org['annual_compensation_usd']} USD", org))
    if not args.json:
        print(
            f"window {window.start:%Y-%m-%d %H:%M} .. {window.end:%Y-%m-%d %H:%M} UTC, "
            f"annualized x 365/{data['window']['days']} days"
        )
    return _print(data, args, rows)


_TASKS = ("requests", "tokens", "cost $", "$/MTok", "value $", "ROI")


def _task_cells(d: dict[str, Any]) -> tuple[str, ...]:
    return (
        d["task_id"],
        str(d.get("requests", "")),
        f"{d['total_tokens']:,}" if "total_tokens" in d else "",
        dollars(d, "cost_usd"),
        dollars(d, "blended_usd_per_mtok"),
        d["value_usd"] or "-",
        f"{d['roi']}x" if d["roi"] else "-",
    )


def _tasks(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    async def listed(engine: Any, filters: Any) -> tuple[Any, Any]:
        return filters, await reports.list_tasks(engine, filters, args.sort, args.limit)

    found = _in_window(settings, args, listed)
    data = [row.as_json() for row in found[1]]
    answer = {**found[0].window_json(), "rows": data}
    if not args.json:
        print(_window_line(answer))
    return _print(answer, args, [("task", *_TASKS), *map(_task_cells, data)], data)


def _roi(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    data = _in_window(settings, args, reports.roi_report).as_json()
    total = data["total"]
    whole = {"cost_usd": total["task_cost_usd"], "cost_complete": total["cost_complete"]}
    cost = dollars(whole | {"requests": 1}, "cost_usd")
    roi = f"{total['roi']}x" if total["roi"] else "-"
    total_row = ("total", "", "", cost, "", total["value_usd"] or "-", roi)
    rows: Rows = [("task", *_ROI), *map(_roi_cells, data["rows"]), total_row]
    if not args.json:
        print(_window_line(data))
    return _print(data, args, rows, [*data["rows"], total])


_ROI = ("requests", "tokens", "task cost $", "$/MTok", "value $", "ROI")


def _roi_cells(d: dict[str, Any]) -> tuple[str, ...]:
    """A task row of the ROI report: ROI divides the value by the task's whole cost."""
    whole = {"cost_usd": d["task_cost_usd"], "cost_complete": d["task_cost_complete"]}
    cells = _task_cells(d)
    return (*cells[:3], dollars(whole | {"requests": 1}, "cost_usd"), *cells[4:])


def _distribution(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    window = _window(args.since)
    found = _run(settings, lambda e: reports.distribution(e, window, args.metric))
    data = found.as_json()
    rows: Rows = [("statistic", args.metric)]
    rows += [("people", str(data["people"])), ("total", str(data["total"]))]
    rows += [(name, str(value)) for name, value in data["percentiles"].items()]
    rows += [("max", str(data["max"]))]
    rows += [(f"{name} share", str(value)) for name, value in data["top_share"].items()]
    rows.append(("gini", str(data["gini"])))
    return _print(data, args, rows)


def _task_show(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    view = _run(settings, lambda engine: reports.task_view(engine, args.task_id))
    if view is None:
        raise CliError(f"no usage recorded for task {args.task_id!r} (tokenmeter usage --by task)")
    data = view.as_json()
    if args.json:
        return _print(data, args, [])
    title = f" ({data['title']})" if data["title"] else ""
    print(
        f"task {view.task_id}{title}: {view.totals.requests} requests, "
        f"users {', '.join(view.users)}"
    )
    print(f"  {data['first_seen']} .. {data['last_seen']}")
    rows: Rows = [("model", *_BLENDED)]
    rows += [_blended_cells(m, t) for m, t in data["by_model"].items()]
    rows.append(_blended_cells("total", data))
    print(table(rows))
    if note := footnote([*data["by_model"].values(), data]):
        print(note)
    print(_roi_line(data))
    return 0


def _roi_line(data: dict[str, Any]) -> str:
    if data["value_usd"] is None:
        return f"ROI: unknown (set it: tokenmeter task set {data['task_id']} --hours H --rate R)"
    basis = data["value_basis"]
    if basis == "value_usd":
        how = f"value ${data['value_usd']}"
    else:
        how = f"{data['human_hours']} h x ${data['hourly_rate_usd']}/h = ${data['value_usd']}"
    roi = f"{data['roi']}x" if data["roi"] else "-"
    cost = dollars(data, "cost_usd")
    return f"ROI: {roi}  ({how} of people's time for ${cost} of tokens)"


def _task_set(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.tasks import TaskRecordError, update_task

    names = {"title": "title", "hours": "human_hours", "rate": "hourly_rate_usd"}
    changes = {field: getattr(args, arg) for arg, field in names.items()}
    changes["value_usd"] = args.value
    changes = {k: v for k, v in changes.items() if v is not None}
    changes |= {_CLEARABLE[name]: None for name in args.clear}
    if not changes:
        options = "--title, --hours, --rate, --value or --clear FIELD"
        raise CliError(f"task set: give at least one of {options}", USAGE)
    with refused(TaskRecordError, status=USAGE):
        record = _run(settings, lambda e: update_task(e, args.task_id, changes))
    value = record.as_json()["value_usd"]  # normalized: no trailing zeros from NUMERIC(20, 10)
    print(f"task {args.task_id}: value {'unknown' if value is None else f'${value}'}")
    return 0
