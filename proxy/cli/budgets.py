"""``tokenmeter budget set|list|rm|status``: spend limits per user, team or the whole org.

``budget set (--user U | --team T | --org) --period day|week|month --usd AMOUNT [--soft]
[--alert 50,80,100]`` creates or changes one budget; ``rm`` removes it (and its counters);
``list`` shows every budget; ``status`` shows each one's period-to-date spend, percent and reset
(``--user``/``--team``: only the budgets a request by them counts against). The running proxies
pick a change up within ``TOKENMETER_BUDGET_REFRESH_S``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from proxy.budgets import BudgetError, Period, make_budget, money, time_zone
from proxy.cli.common import USAGE, CliError, run_with_engine
from proxy.cli.tables import Column, render
from proxy.config import Settings
from proxy.reports.budgets import BudgetStatus


def add_commands(sub: Any) -> None:
    budget = sub.add_parser("budget", help="spend limits and caps").add_subparsers(
        title="budget commands", metavar="COMMAND"
    )
    put = budget.add_parser("set", help="create or change a budget")
    _who(put)
    put.add_argument("--period", required=True, choices=[p.value for p in Period])
    put.add_argument("--usd", required=True, type=_amount, help="the amount per period")
    put.add_argument("--soft", action="store_true", help="alert only, never refuse")
    put.add_argument("--alert", type=_alerts, help="thresholds in percent (default 50,80,100)")
    put.set_defaults(handler=_set)
    remove = budget.add_parser("rm", help="remove a budget")
    _who(remove)
    remove.add_argument("--period", required=True, choices=[p.value for p in Period])
    remove.set_defaults(handler=_remove)
    for name, help_text in (("list", "every budget"), ("status", "spend against each budget")):
        show = budget.add_parser(name, help=help_text)
        if name == "status":
            show.add_argument("--user", help="only the budgets covering this user")
            show.add_argument("--team", help="only the budgets covering this team")
        show.add_argument("--json", action="store_true", help="print JSON")
        show.set_defaults(handler=_status, brief=name == "list")


def _who(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group()  # one is required: checked by ``_scope``
    who.add_argument("--user", help="a person's budget")
    who.add_argument("--team", help="a team's shared pool")
    who.add_argument("--org", action="store_true", help="the whole company's pool")


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text.replace(",", "").removeprefix("$"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like 2000.00") from None


def _alerts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 50,80,100") from None


def _scope(args: argparse.Namespace) -> tuple[str, str | None]:
    if not args.org and args.user is None and args.team is None:
        raise CliError("budget: give one of --user USER, --team TEAM or --org", USAGE)
    if args.org:
        return "org", None
    return ("user", args.user) if args.user is not None else ("team", args.team)


def _set(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.reports.budgets import set_budget

    scope, name = _scope(args)
    try:
        budget = make_budget(
            scope, name, args.period, args.usd, hard=not args.soft, alerts=args.alert
        )
    except BudgetError as exc:
        raise CliError(f"budget set: {exc}", USAGE) from exc
    tz = time_zone(settings.budget_tz)
    run_with_engine(settings, lambda engine: set_budget(engine, budget, tz, datetime.now(UTC)))
    kind = "hard" if budget.hard else "soft"
    print(f"{budget.who()}: {budget.period.adjective} {money(budget.amount_usd)} ({kind}) set")
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.reports.budgets import remove_budget

    scope, name = _scope(args)
    key = (scope, name or "", args.period)
    if not run_with_engine(settings, lambda engine: remove_budget(engine, key)):
        raise CliError(f"budget rm: no {args.period} budget for {scope} {name or ''}".strip())
    print(f"removed the {args.period} budget of {scope} {name or ''}".strip())
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.reports.budgets import budget_status

    tz = time_zone(settings.budget_tz)
    user, team = getattr(args, "user", None), getattr(args, "team", None)
    rows = run_with_engine(
        settings,
        lambda engine: budget_status(
            engine, tz, datetime.now(UTC), user=user, team=team, covering=bool(user or team)
        ),
    )
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return 0
    if not rows:
        print("no budgets (tokenmeter budget set --help)")
        return 0
    print(render(_LIST if args.brief else _STATUS, rows, left=3))
    return 0


_LIST: list[Column[BudgetStatus]] = [
    Column("scope", lambda r: r.budget.scope.value),
    Column("name", lambda r: r.budget.name or "-"),
    Column("period", lambda r: r.budget.period.value),
    Column("limit", lambda r: money(r.budget.amount_usd)),
    Column("kind", lambda r: "hard" if r.budget.hard else "soft"),
    Column("alerts %", lambda r: ",".join(map(str, r.budget.alerts))),
]
_STATUS: list[Column[BudgetStatus]] = [
    *_LIST[:4],
    Column("spent", lambda r: money(r.spent)),
    Column("used", lambda r: f"{r.percent}%"),
    Column("kind", lambda r: ("OVER " if r.over else "") + ("hard" if r.budget.hard else "soft")),
    Column("resets", lambda r: r.as_json()["resets"]),
]
