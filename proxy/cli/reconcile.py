"""``tokenmeter reconcile fetch|import``: the provider's own usage and cost reports, stored.

``reconcile fetch --since 30d`` reads Anthropic's Admin API usage and cost reports with
``TOKENMETER_ANTHROPIC_ADMIN_KEY``; ``reconcile import FILE.json`` stores pages saved by hand
(``proxy.reconciliation``). Both print what they stored; ``tokenmeter report reconcile`` then
compares it with what the proxy metered.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from proxy.cli.common import SINCE_HELP, USAGE, CliError, refused, run_with_engine, since
from proxy.config import Settings
from proxy.store.aggregates import day_of


def add_commands(sub: Any) -> None:
    group = sub.add_parser("reconcile", help="store the provider's usage and cost reports")
    commands = group.add_subparsers(title="reconcile commands", metavar="COMMAND")
    fetch = commands.add_parser("fetch", help="read Anthropic's Admin API usage and cost reports")
    fetch.add_argument("--since", default="30d", type=since, help=SINCE_HELP)
    fetch.set_defaults(handler=_fetch)
    load = commands.add_parser("import", help="store report pages saved as JSON")
    load.add_argument("file", type=Path, help="one page, or a JSON list of pages, of either report")
    load.set_defaults(handler=_import)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reconciliation

    key = settings.anthropic_admin_key
    if not key:
        raise CliError(
            "reconcile fetch: set TOKENMETER_ANTHROPIC_ADMIN_KEY (an Admin API key), "
            "or save the reports and use tokenmeter reconcile import FILE.json",
            USAGE,
        )
    # Whole UTC days: the Admin API returns the buckets that end before ``ending_at``.
    start, end = day_of(args.since), day_of(datetime.now(UTC)) + timedelta(days=1)

    async def work(engine: Any) -> Any:
        upstream = reconciliation.admin_client(settings)
        try:
            return await reconciliation.fetch(
                engine,
                upstream,
                base_url=settings.anthropic_admin_url,
                admin_key=key,
                start=start,
                end=end,
            )
        finally:
            await upstream.aclose()

    with refused(reconciliation.ReconcileError):
        summary = run_with_engine(settings, work)
    print(_summary_line("fetched", summary))
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reconciliation

    with refused(reconciliation.ReconcileError, status=USAGE):
        pages, saved = reconciliation.read_file(args.file)  # before the database is opened
    summary = run_with_engine(settings, lambda e: reconciliation.import_pages(e, pages, saved))
    print(_summary_line(f"imported {args.file}:", summary))
    return 0


def _summary_line(verb: str, summary: Any) -> str:
    parts = [
        f"{_many(summary.pages[name], f'{name} page')} "
        f"({_many(summary.buckets[name], 'bucket')}, {_many(summary.lines[name], 'line')})"
        for name in ("usage", "cost")
        if summary.pages[name]
    ]
    span = ""
    if summary.first is not None and summary.last is not None:
        span = f", {summary.first:%Y-%m-%d %H:%M} .. {summary.last:%Y-%m-%d %H:%M} UTC"
    return f"{verb} {', '.join(parts)}{span}; snapshot {summary.snapshot_id}"


def _many(count: int, thing: str) -> str:
    return f"{count:,} {thing}{'s' * (count != 1)}"
