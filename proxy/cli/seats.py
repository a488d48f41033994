"""``tokenmeter seats set|import|list``: who holds a subscription seat, on what plan and price.

``seats set alice --plan max-20x --usd-per-month 200`` records (or replaces) one person's seat;
``seats import FILE.csv`` (header ``user,usd_per_month,plan``) writes a whole file or nothing,
errors printed with their line numbers. ``tokenmeter report seats`` (``proxy/cli/reports.py``)
compares each seat's price with the API-equivalent value of its holder's seat traffic.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.cli.common import USAGE, CliError, read_text, run_with_engine
from proxy.cli.tables import Column, entered, render
from proxy.config import Settings
from proxy.seats import Seat


def add_commands(sub: Any) -> None:
    seats = sub.add_parser("seats", help="subscription seats and their price").add_subparsers(
        title="seats commands"
    )
    put = seats.add_parser("set", help="record a person's seat: plan and price per month")
    put.add_argument("user")
    put.add_argument("--plan", help="the plan's name, for people to read (max-20x, team …)")
    put.add_argument("--usd-per-month", required=True, help="the seat's price per month in USD")
    put.set_defaults(handler=_set)
    load = seats.add_parser("import", help="import a CSV user,usd_per_month,plan (all or none)")
    load.add_argument("file", type=Path)
    load.set_defaults(handler=_import)
    show = seats.add_parser("list", help="every seat")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_list)


def _set(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import seats

    try:
        seat = seats.check(
            Seat(args.user, args.plan, seats.price(args.usd_per_month), datetime.now(UTC))
        )
    except seats.SeatError as exc:
        raise CliError(f"seats set: {exc}", USAGE) from exc
    run_with_engine(settings, lambda engine: seats.save_seats(engine, [seat]))
    plan = f" on {seat.plan}" if seat.plan else ""
    print(f"{seat.user}: seat{plan} at ${entered(seat.usd_per_month)} per month")
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import seats

    text = read_text(args.file)
    try:
        found = seats.parse_csv(text, datetime.now(UTC))
    except seats.SeatImportError as exc:
        raise CliError(f"{args.file}: {exc}") from exc
    count = run_with_engine(settings, lambda engine: seats.save_seats(engine, found))
    print(f"imported {count} seats from {args.file}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import seats

    found = run_with_engine(settings, seats.load_seats)
    rows = list(found.values())
    if args.json:
        print(json.dumps([seat.as_json() for seat in rows], indent=2))
        return 0
    print(render(_COLUMNS, rows))
    return 0


_COLUMNS: list[Column[Seat]] = [
    Column("user", lambda s: s.user),
    Column("plan", lambda s: s.plan or ""),
    Column("$/month", lambda s: entered(s.usd_per_month)),
    Column("since", lambda s: s.updated_at.date().isoformat()),
]
