"""``tokenmeter pr show owner/name#123``: what one pull request's sessions cost.

A pull request is known from the work context Claude Code's hooks send (``tokenmeter
claude-code install``); its events are every event of a session whose context names it, whatever
their time: tokens and dollars per model with blended $/MTok, sessions and people.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from proxy.cli.common import USAGE, CliError, run_with_engine
from proxy.cli.tables import BLENDED, footnote, keyed, render
from proxy.config import Settings

PR = re.compile(r"^[^\s#]+/[^\s#]+#\d+$")


def add_commands(sub: Any) -> None:
    pr = sub.add_parser("pr", help="one pull request").add_subparsers(
        title="pr commands", metavar="COMMAND"
    )
    show = pr.add_parser("show", help="a pull request's cost, tokens, sessions, people, models")
    show.add_argument("pr", metavar="OWNER/NAME#NUMBER")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_pr_show)


def _pr_show(args: argparse.Namespace, settings: Settings) -> int:
    from proxy import reports

    if not PR.match(args.pr):
        raise CliError(
            f"pr show: expected OWNER/NAME#NUMBER, e.g. acme/widgets#123; got {args.pr!r}", USAGE
        )
    view = run_with_engine(settings, lambda engine: reports.work_view(engine, "pr", args.pr))
    if view is None:
        raise CliError(f"no usage recorded for pull request {args.pr} (tokenmeter usage --by pr)")
    if args.json:
        print(json.dumps({"pr": args.pr, **view.as_json()}, indent=2))
        return 0
    print(
        f"pr {args.pr}: {view.totals.requests} requests in {len(view.sessions)} session(s), "
        f"users {', '.join(view.users) or '-'}"
    )
    print(f"  {view.first_seen.isoformat()} .. {view.last_seen.isoformat()}")
    rows = [*view.by_model.items(), ("total", view.totals)]
    print(render(keyed("model", BLENDED), rows))
    if note := footnote(not t.cost_complete for _, t in rows):
        print(note)
    return 0
