"""``tokenmeter reconcile fetch|import``: the provider's own usage and cost reports, stored.

``reconcile fetch --since 30d`` reads Anthropic's Admin API usage and cost reports with
``TOKENMETER_ANTHROPIC_ADMIN_KEY`` and OpenAI's organization usage and costs with
``TOKENMETER_OPENAI_ADMIN_KEY`` (each provider whose key is set, or ``--provider``);
``reconcile import FILE.json`` stores pages of either, saved by hand (``proxy.reconciliation``).
Both print what they stored, a line per provider; ``tokenmeter report reconcile`` then compares
it with what the proxy metered.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from proxy.cli.common import SINCE_HELP, USAGE, CliError, refused, run_with_engine, since
from proxy.config import Settings
from proxy.providers.admin import COST
from proxy.providers.admin import USAGE as USAGE_REPORT
from proxy.providers.openai_admin import EMBEDDINGS
from proxy.store.aggregates import day_of


def add_commands(sub: Any) -> None:
    group = sub.add_parser("reconcile", help="store the provider's usage and cost reports")
    commands = group.add_subparsers(title="reconcile commands", metavar="COMMAND")
    fetch = commands.add_parser(
        "fetch", help="read Anthropic's and OpenAI's admin usage and cost reports"
    )
    fetch.add_argument("--since", default="30d", type=since, help=SINCE_HELP)
    fetch.add_argument(
        "--provider",
        choices=("anthropic", "openai", "all"),
        default="all",
        help="whose reports (default: every provider with an admin key set)",
    )
    fetch.set_defaults(handler=_fetch)
    load = commands.add_parser("import", help="store report pages saved as JSON")
    load.add_argument("file", type=Path, help="one page, or a JSON list of pages, of either report")
    load.set_defaults(handler=_import)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reconciliation

    apis = {
        "anthropic": (
            reconciliation.ANTHROPIC_API,
            settings.anthropic_admin_url,
            settings.anthropic_admin_key,
            "TOKENMETER_ANTHROPIC_ADMIN_KEY",
        ),
        "openai": (
            reconciliation.OPENAI_API,
            settings.openai_admin_url,
            settings.openai_admin_key,
            "TOKENMETER_OPENAI_ADMIN_KEY",
        ),
    }
    wanted = list(apis) if args.provider == "all" else [args.provider]
    chosen = [apis[name] for name in wanted if apis[name][2]]
    if not chosen:
        names = " or ".join(apis[name][3] for name in wanted)
        raise CliError(
            f"reconcile fetch: set {names} (an admin key), "
            "or save the reports and use tokenmeter reconcile import FILE.json",
            USAGE,
        )
    # Whole UTC days: the Admin APIs return the buckets that end before the window's end.
    start, end = day_of(args.since), day_of(datetime.now(UTC)) + timedelta(days=1)

    async def work(engine: Any) -> None:
        upstream = reconciliation.admin_client(settings)
        try:
            for api, url, key, _ in chosen:  # a provider's snapshot is kept if a later one fails
                summary = await reconciliation.fetch(
                    engine,
                    upstream,
                    base_url=url,
                    admin_key=key or "",
                    start=start,
                    end=end,
                    api=api,
                )
                print(_summary_line("fetched", summary), flush=True)
        finally:
            await upstream.aclose()

    with refused(reconciliation.ReconcileError):
        run_with_engine(settings, work)
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reconciliation

    with refused(reconciliation.ReconcileError, status=USAGE):
        pages, saved = reconciliation.read_file(args.file)  # before the database is opened
    summaries = run_with_engine(settings, lambda e: reconciliation.import_pages(e, pages, saved))
    for summary in summaries:
        print(_summary_line(f"imported {args.file}:", summary))
    return 0


def _summary_line(verb: str, summary: Any) -> str:
    parts = [
        f"{_many(summary.pages[name], f'{words} page')} "
        f"({_many(summary.buckets[name], 'bucket')}, {_many(summary.lines[name], 'line')})"
        for name, words in _REPORTS.items()
        if summary.pages[name]
    ]
    span = ""
    if summary.first is not None and summary.last is not None:
        span = f", {summary.first:%Y-%m-%d %H:%M} .. {summary.last:%Y-%m-%d %H:%M} UTC"
    return f"{verb} {', '.join(parts)}{span}; {summary.provider} snapshot {summary.snapshot_id}"


_REPORTS = {USAGE_REPORT: "usage", EMBEDDINGS: "embeddings usage", COST: "cost"}  # in order


def _many(count: int, thing: str) -> str:
    return f"{count:,} {thing}{'s' * (count != 1)}"
