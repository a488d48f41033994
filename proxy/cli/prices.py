"""``tokenmeter prices show|missing`` and ``tokenmeter reprice``: audit and replay prices.

``prices show MODEL`` prints every rate a model is billed at on a day, each with its source (the
catalog version and URL, overlay rule, company override). ``prices missing`` lists models seen in
traffic that had no price, with request counts. ``reprice --since DATE`` recomputes stored costs
with today's catalog and overrides and prints the totals before and after (``--dry-run`` writes
nothing); the rollup follows in the same transactions, and a second run changes nothing.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from proxy.cli.common import SINCE_HELP, USAGE, CliError, refused, run_with_engine, since
from proxy.cli.tables import Column, render
from proxy.config import Settings
from proxy.pricing.overrides import PROVIDERS
from proxy.reports import Unpriced
from proxy.reports.totals import money
from proxy.repricing import Side
from proxy.usage import as_utc


def add_commands(sub: Any) -> None:
    prices = sub.add_parser("prices", help="rates and where they come from").add_subparsers(
        title="prices commands"
    )
    show = prices.add_parser("show", help="every rate of a model, with its source")
    show.add_argument("model")
    show.add_argument("--at", type=_moment, help="YYYY-MM-DD (default today, UTC)")
    show.add_argument("--provider", choices=PROVIDERS, help="default: whichever prices the model")
    show.add_argument("--tier", help="served service_tier, e.g. batch, priority, flex")
    show.add_argument("--geo", help="served inference_geo, e.g. us")
    show.add_argument("--speed", help="served speed, e.g. fast")
    show.set_defaults(handler=_show)
    missing = prices.add_parser("missing", help="models seen in traffic with no price")
    missing.set_defaults(handler=_missing)
    reprice = sub.add_parser("reprice", help="recompute stored costs with today's prices")
    reprice.add_argument("--since", required=True, type=since, help=SINCE_HELP)
    reprice.add_argument("--dry-run", action="store_true", help="compute, print, write nothing")
    reprice.set_defaults(handler=_reprice)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from None
    return as_utc(moment)


def load_pricer(settings: Settings) -> Any:
    from proxy.pricing import Pricer, load_overrides
    from proxy.pricing.overrides import OverridesError

    with refused(OverridesError, status=USAGE):
        overrides = load_overrides(settings.prices_file) if settings.prices_file else None
    return Pricer(overrides)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    pricer, at = load_pricer(settings), args.at or datetime.now(UTC)
    for provider in (args.provider,) if args.provider else PROVIDERS:
        served = {"service_tier": args.tier, "inference_geo": args.geo, "speed": args.speed}
        card = pricer.rate_card(provider, args.model, at, **served)
        if card is not None:
            print("\n".join(card.lines()))
            return 0
    where = args.provider or " or ".join(PROVIDERS)
    raise CliError(f"no price known for {args.model!r} ({where}) on {at:%Y-%m-%d}")


def _missing(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.reports import unpriced_models

    found = run_with_engine(settings, unpriced_models)
    if not found:
        print("every request seen so far had a price")
        return 0
    pricer, now = load_pricer(settings), datetime.now(UTC)

    def priced_now(row: Unpriced) -> str:
        known = bool(row.model) and pricer.rate_card(row.provider, row.model, now) is not None
        return "yes: run tokenmeter reprice" if known else "no"

    print(render([*_MISSING, Column("priced now", priced_now)], found))
    return 0


_MISSING: list[Column[Unpriced]] = [
    Column("model", lambda row: row.model or "(no model in response)"),
    Column("provider", lambda row: row.provider),
    Column("requests", lambda row: str(row.requests)),
    Column("first hour", lambda row: f"{row.first_hour:%Y-%m-%d %H:00}"),
    Column("last hour", lambda row: f"{row.last_hour:%Y-%m-%d %H:00}"),
]


def _reprice(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.repricing import reprice

    pricer, start = load_pricer(settings), since(args.since)
    result = run_with_engine(
        settings, lambda engine: reprice(engine, pricer, start, dry_run=args.dry_run)
    )
    mode = "dry run, nothing written" if args.dry_run else "written; rollup updated"
    print(f"reprice since {start.isoformat()} with {pricer.version} ({mode})")
    print(
        f"{result.events} events: {result.changed} repriced (new price version), "
        f"{result.cost_changed} of them with a different cost"
    )
    lines = [(model, *sides) for model, sides in sorted(result.by_model.items())]
    print(render(_REPRICED, [*lines, ("total", result.before, result.after)]))
    return 0


Repriced = tuple[str, Side, Side]  # a model (or the total), before and after
_REPRICED: list[Column[Repriced]] = [
    Column("model", lambda line: line[0]),
    Column("before $", lambda line: money(line[1].cost_usd)),
    Column("after $", lambda line: money(line[2].cost_usd)),
    Column("change $", lambda line: money(line[2].cost_usd - line[1].cost_usd)),
    Column("unpriced before", lambda line: str(line[1].unpriced)),
    Column("unpriced after", lambda line: str(line[2].unpriced)),
]
