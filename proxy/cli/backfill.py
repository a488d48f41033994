"""``tokenmeter backfill claude-code [DIR…]``: usage from Claude Code's transcripts.

Reads ``~/.claude/projects`` and ``~/.config/claude/projects`` (or ``$CLAUDE_CONFIG_DIR``'s)
unless directories or files are named, stores one event per API response not already metered
by the proxy (``proxy.backfill``), and prints what it read, skipped and wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from proxy.cli.common import CliError
from proxy.cli.prices import load_pricer
from proxy.config import Settings


def add_commands(sub: Any) -> None:
    backfill = sub.add_parser("backfill", help="usage the proxy never saw, from agents' logs")
    sources = backfill.add_subparsers(title="backfill commands")
    claude = sources.add_parser(
        "claude-code", help="Claude Code's JSONL transcripts (~/.claude/projects)"
    )
    claude.add_argument(
        "dirs", nargs="*", type=Path, metavar="DIR", help="default: where Claude Code keeps them"
    )
    claude.add_argument("--user", help="who the usage is billed to")
    claude.add_argument("--team", help="their team")
    claude.add_argument("--task", help="a task to book it to")
    claude.set_defaults(handler=_claude_code)


def _claude_code(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import claude_logs
    from proxy.backfill import Payer, backfill
    from proxy.cli.common import run_with_engine

    paths = list(args.dirs) or claude_logs.default_dirs()
    missing = [str(p) for p in paths if not p.exists()]
    if args.dirs and missing:
        raise CliError(f"no such file or directory: {', '.join(missing)}")
    prices = load_pricer(settings)
    payer = Payer(args.user, args.team, args.task)

    async def work(engine: Any) -> Any:
        return await backfill(
            engine, prices, [p for p in paths if p.exists()], payer, settings.ticket_pattern
        )

    summary = run_with_engine(settings, work)
    print("\n".join(summary.lines_out()))
    return 0
