"""``tokenmeter people import FILE.csv`` and ``tokenmeter people list``: the compensation records.

Import validates the whole file first and writes all of it or nothing; errors are printed with
their line numbers. The running proxy's compensation gauge picks the change up at its next start
or the next write through the API.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from proxy.cli.common import CliError, read_text, run_with_engine
from proxy.cli.tables import Column, entered, render
from proxy.config import Settings
from proxy.people import Person


def add_commands(sub: Any) -> None:
    people = sub.add_parser("people", help="people and compensation").add_subparsers(
        title="people commands"
    )
    load = people.add_parser("import", help="import a CSV of people (all rows or none)")
    load.add_argument("file", type=Path)
    load.set_defaults(handler=_import)
    show = people.add_parser("list", help="people in effect on a day")
    show.add_argument("--at", type=_day, help="YYYY-MM-DD (default today)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_list)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from None


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import people

    text = read_text(args.file)
    try:
        found = people.parse_csv(text, datetime.now(UTC).date())
    except people.PeopleImportError as exc:
        raise CliError(f"{args.file}: {exc}") from exc
    count = run_with_engine(settings, lambda engine: people.save_people(engine, found))
    print(f"imported {count} people records from {args.file}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import people

    history = run_with_engine(settings, people.load_people)
    current = people.in_effect(history, args.at or datetime.now(UTC).date())
    rows = [current[user] for user in sorted(current)]
    if args.json:
        print(json.dumps([person.as_json() for person in rows], indent=2))
        return 0
    print(render(_COLUMNS, rows))
    return 0


_COLUMNS: list[Column[Person]] = [
    Column("user", lambda p: p.user),
    Column("name", lambda p: p.name or ""),
    Column("team", lambda p: p.team or ""),
    Column("compensation", lambda p: f"{entered(p.annual_compensation)} {p.currency}"),
    Column("since", lambda p: p.effective_from.isoformat()),
]
