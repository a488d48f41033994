"""``tokenmeter report …`` and ``tokenmeter task …``: the reports in the terminal, or JSON.

``report blended|people|tasks|roi|distribution|seats`` print aligned tables; ``--json`` prints
what the REST API answers. ``blended``, ``tasks`` and ``roi`` take ``--since``/``--until`` and count
exactly the events in that window, as ``tokenmeter usage`` does; a dollar figure is ``?`` when
unknown and ends in ``*`` when it covers priced requests only (a legend says so).
``task show ID`` gives one task's cost and ROI; ``task set ID`` records what the
work was worth (hours × rate, or a value) so the ROI can be computed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from proxy.cli.common import SINCE_HELP, USAGE, CliError, read_text, refused, run_with_engine, since
from proxy.cli.tables import (
    API_EQUIVALENT,
    BLENDED,
    COST,
    NONE,
    PER_MTOK,
    REQUESTS,
    TOKENS,
    Column,
    Given,
    count,
    dollars,
    entered,
    footnote,
    keyed,
    multiple,
    render,
    seat_note,
    share,
    spent,
    window_line,
)
from proxy.config import Settings
from proxy.people import Person
from proxy.reports import CompensationReport, TaskRow, TaskView, Totals, Window
from proxy.reports.compensation import Spend, team_of
from proxy.reports.seats import SeatMonth
from proxy.reports.totals import money


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
        ("reconcile", _reconcile, "proxy vs the provider's usage and cost reports, per day"),
        ("seats", _seats, "per seat and month: API-equivalent value vs seat price"),
    ):
        parser = kinds.add_parser(name, help=text)
        if name == "seats":
            parser.add_argument("--months", type=_count, default=3, help="calendar months (UTC)")
        else:
            parser.add_argument("--since", default="30d", type=since, help=SINCE_HELP)
        if name in {"blended", "tasks", "roi", "reconcile"}:
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
        if name == "reconcile":
            parser.add_argument("--provider", default="all", choices=("anthropic", "openai", "all"))
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
    load = task.add_parser(
        "import", help="set many tasks' value from a CSV (ticket, hours, rate, value): all or none"
    )
    load.add_argument("file", type=Path)
    load.set_defaults(handler=_task_import)


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


def _print(data: Any, args: argparse.Namespace, text: str, marked: Iterable[bool] = ()) -> int:
    """``data`` as JSON, or the table ``text`` with the legend of its dollar marks."""
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(text)
    if note := footnote(marked):
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


def _run(settings: Settings, work: Any) -> Any:
    from proxy import reports

    with refused(reports.ReportError, status=USAGE):
        return run_with_engine(settings, work)


def _blended(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    found = _in_window(settings, args, lambda e, f: reports.blended(e, args.by, f))
    rows = [*found.groups, ("total", found.total)]
    if not args.json:
        print(window_line(found.filters))
    text = render(keyed(args.by, BLENDED), rows)
    if note := seat_note(t for _, t in rows):
        text += "\n" + note
    return _print(found.as_json(), args, text, (not t.cost_complete for _, t in rows))


def _people(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    window = _window(args.since)
    usd_per = settings.usd_per_currency
    found = _run(settings, lambda e: reports.compensation_report(e, window, usd_per))
    if not args.json:
        print(
            f"window {window.start:%Y-%m-%d %H:%M} .. {window.end:%Y-%m-%d %H:%M} UTC, "
            f"annualized x 365/{entered(window.days)} days"
        )
    return _print(found.as_json(), args, _compensation_table(found))


def _tasks(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    async def listed(engine: Any, filters: Any) -> tuple[Any, Any]:
        return filters, await reports.list_tasks(engine, filters, args.sort, args.limit)

    filters, rows = _in_window(settings, args, listed)
    answer = {**filters.window_json(), "rows": [row.as_json() for row in rows]}
    if not args.json:
        print(window_line(filters))
    text = render(_task_columns(_TASK_COST), rows)
    return _print(answer, args, text, (not row.totals.cost_complete for row in rows))


def _roi(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    found = _in_window(settings, args, reports.roi_report)
    cost = dollars(money(found.task_cost_usd), complete=found.cost_complete)
    total = Given(("total", "", "", cost, "", entered(found.value_usd), multiple(found.roi)))
    if not args.json:
        print(window_line(found.filters))
    text = render(_task_columns(_WHOLE_COST), [*found.tasks, total])
    marked = [*(not row.totals.cost_complete for row in found.tasks), not found.cost_complete]
    return _print(found.as_json(), args, text, marked)


def _window_totals(row: TaskRow) -> Totals:
    return row.totals


_TASK_COST = COST.of(_window_totals)
# ROI divides a task's value by its whole cost (every event of it, whatever the window).
_WHOLE_COST: Column[TaskRow] = Column(
    "task cost $", lambda row: spent(row.whole, row.whole.known_cost_usd)
)


def _task_columns(cost: Column[TaskRow]) -> list[Column[TaskRow]]:
    """A task list's columns, with ``cost`` as its dollars."""
    return [
        Column("task", lambda row: row.task_id),
        REQUESTS.of(_window_totals),
        TOKENS.of(_window_totals),
        cost,
        PER_MTOK.of(_window_totals),
        Column("value $", lambda row: entered(row.value_usd)),
        Column("ROI", lambda row: multiple(row.roi)),
    ]


@dataclass(frozen=True, slots=True)
class _Payroll:
    """A row of the compensation table: a person, a team or the org."""

    name: str
    team: str
    pay: str
    spend: Spend


def _seats(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    found = _run(settings, lambda engine: reports.seat_report(engine, args.months))
    text = render(_SEAT_COLUMNS, found.rows)
    if any(row.to_date for row in found.rows):
        text += "\n~ month to date: its value can still grow; the price is the whole month's"
    return _print(found.as_json(), args, text)


def _month(row: SeatMonth) -> str:
    return row.month.strftime("%Y-%m") + ("~" if row.to_date else "")


def _saves(row: SeatMonth) -> str:
    saves = row.seat_saves_usd
    return NONE if saves is None else money(saves)


_SEAT_COLUMNS: list[Column[SeatMonth]] = [
    Column("user", lambda row: row.user),
    Column("month", _month),
    Column("plan", lambda row: row.seat.plan or "" if row.seat else ""),
    Column("seat $", lambda row: entered(row.price_usd)),
    Column("API-equiv $", lambda row: money(row.value_usd)),
    Column("value/price", lambda row: multiple(row.value_per_price)),
    Column("seat saves $", _saves),
    Column("verdict", lambda row: row.verdict),
    Column("paid $", lambda row: spent(row.totals, row.totals.known_cost_usd)),
]


def _seat_year(spend: Spend) -> str:
    return money(spend.seat_usd_per_year) if spend.seat_usd_per_year else NONE


def _compensation_table(report: CompensationReport) -> str:
    """People, then (after a blank line) teams and the org: pay against annualized spend."""
    window = report.window
    columns: list[Column[_Payroll]] = [
        Column("user", lambda row: row.name),
        Column("team", lambda row: row.team),
        Column("compensation", lambda row: row.pay),
        Column("spend $", lambda row: spent(row.spend.totals, row.spend.totals.known_cost_usd)),
        Column("API-equiv $", lambda row: API_EQUIVALENT.cell(row.spend.totals)),
        Column("seats $/yr", lambda row: _seat_year(row.spend)),
        Column(
            "annualized $",
            lambda row: spent(row.spend.totals, row.spend.annualized_usd(window), str),
        ),
        Column("spend/comp", lambda row: share(row.spend.spend_to_compensation(window), 2)),
        Column("tokens/month", lambda row: count(row.spend.tokens_per_month(window))),
    ]
    people = [_Payroll(s.key, team_of(p), _pay(p), s) for s, p in report.people]
    groups = [
        _Payroll(f"team {t.key}", "", f"{t.annual_compensation_usd} USD", t) for t in report.teams
    ]
    org = _Payroll("org", "", f"{report.org.annual_compensation_usd} USD", report.org)
    rows: list[_Payroll | Given] = [*people, Given(("",) * len(columns)), *groups, org]
    return render(columns, rows)


def _pay(person: Person | None) -> str:
    return NONE if person is None else f"{entered(person.annual_compensation)} {person.currency}"


def _distribution(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    window = _window(args.since)
    found = _run(settings, lambda e: reports.distribution(e, window, args.metric))
    spread = found.spread()
    rows = [("people", spread.people), ("total", spread.total), *spread.percentiles.items()]
    rows += [("max", spread.max)]
    rows += [(f"{name} share", value) for name, value in spread.top_share.items()]
    rows += [("gini", spread.gini)]
    columns = [Column("statistic", _name), Column(args.metric, _statistic)]
    return _print(found.as_json(), args, render(columns, rows))


Statistic = tuple[str, str | int | None]


def _name(row: Statistic) -> str:
    return row[0]


def _statistic(row: Statistic) -> str:
    return str(row[1])  # "None" for a statistic of nobody, as before


def _task_show(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    view = _run(settings, lambda engine: reports.task_view(engine, args.task_id))
    if view is None:
        raise CliError(f"no usage recorded for task {args.task_id!r} (tokenmeter usage --by task)")
    if args.json:
        return _print(view.as_json(), args, "")
    title = f" ({view.record.title})" if view.record and view.record.title else ""
    print(
        f"task {view.task_id}{title}: {view.totals.requests} requests, "
        f"users {', '.join(view.users)}"
    )
    print(f"  {view.first_seen.isoformat()} .. {view.last_seen.isoformat()}")
    rows = [*view.by_model.items(), ("total", view.totals)]
    print(render(keyed("model", BLENDED), rows))
    if note := footnote(not t.cost_complete for _, t in rows):
        print(note)
    if note := seat_note(t for _, t in rows):
        print(note)
    print(_roi_line(view))
    return 0


def _roi_line(view: TaskView) -> str:
    record = view.record
    value, basis = record.value() if record else (None, None)
    if record is None or value is None:
        return f"ROI: unknown (set it: tokenmeter task set {view.task_id} --hours H --rate R)"
    if basis == "value_usd":
        how = f"value ${entered(value)}"
    else:
        hours, rate = entered(record.human_hours), entered(record.hourly_rate_usd)
        how = f"{hours} h x ${rate}/h = ${entered(value)}"
    cost = spent(view.totals, view.totals.known_cost_usd)
    return f"ROI: {multiple(view.roi)}  ({how} of people's time for ${cost} of tokens)"


def _task_import(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.tasks import TaskImportError, import_tasks, parse_values_csv

    content = read_text(args.file)
    with refused(TaskImportError):
        found = parse_values_csv(content)
    count = _run(settings, lambda engine: import_tasks(engine, found))
    print(f"set the value of {count} task(s) from {args.file}")
    return 0


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
    value = record.value()[0]
    print(f"task {args.task_id}: value {'unknown' if value is None else f'${entered(value)}'}")
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    end = since(args.until) if args.until else datetime.now(UTC)

    async def work(engine: Any) -> Any:
        overridden = await reports.company_prices(settings.prices_file)
        providers = reports.RECONCILED_PROVIDERS if args.provider == "all" else (args.provider,)
        return await reports.reconcile(engine, since(args.since), end, overridden, providers)

    found = _run(settings, work)
    if args.json:
        return _print(found.as_json(), args, "")
    data = found.as_json()
    fetched = "; ".join(
        f"{vendor} " + ", ".join(f"{k} {_minute(v)}" for k, v in used.items())
        for vendor, used in found.snapshots.items()
    )
    print(
        f"window {_minute(found.start)} .. {_minute(found.end)} (whole UTC days); "
        f"provider reports fetched: {fetched}"
    )
    if not any(v for used in found.snapshots.values() for v in used.values()):
        print("no provider reports stored: tokenmeter reconcile fetch, or reconcile import FILE")
    print(render(_RECONCILE, [*data["rows"], data["total"]], left=3))
    print(f"coverage: {share(found.coverage)} of provider-reported tokens seen by the proxy")
    print("verdicts: " + ", ".join(f"{n} {name}" for name, n in data["verdicts"].items()))
    other = data["other_costs"]
    costs = ", ".join(f"{k} ${v}" for k, v in other["provider_usd"].items()) or "none"
    searched = other["proxy_web_search_usd"]
    print(f"provider costs without a model: {costs}; proxy web search ${searched}")
    for row in [*data["rows"], data["total"]]:
        for note in row["notes"]:
            label = " ".join(filter(None, (row["day"], row["vendor"], row["model"])))
            print(f"  {label}: {note}")
    return 0


def _minute(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def _signed(value: Any) -> str:
    if value is None:
        return NONE
    text = str(value)
    return text if text.startswith("-") or not text.strip("0.") else f"+{text}"


def _pct_cell(value: str | None) -> str:
    return NONE if value is None else f"{_signed(value)}%"


_RECONCILE: list[Column[dict[str, Any]]] = [
    Column("day", lambda r: r["day"]),
    Column("vendor", lambda r: r["vendor"]),
    Column("model", lambda r: r["model"]),
    Column("proxy tokens", lambda r: count(r["proxy"]["total_tokens"])),
    Column("provider tokens", lambda r: count(r["provider"]["total_tokens"])),
    Column("diff", lambda r: _signed(f"{r['token_diff']:,}")),
    Column("diff %", lambda r: _pct_cell(r["token_diff_pct"])),
    Column("proxy $", lambda r: dollars(r["proxy"]["usd"])),
    Column("provider $", lambda r: dollars(r["provider"]["usd"])),
    Column("diff $", lambda r: _signed(r["usd_diff"])),
    Column("diff $ %", lambda r: _pct_cell(r["usd_diff_pct"])),
    Column("verdict", lambda r: r.get("verdict", "")),
]
