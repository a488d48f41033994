"""``tokenmeter claude-code env --key tmk_…``: the settings that point Claude Code at this proxy.

Prints shell ``export`` lines (default) or the ``env`` block of a Claude Code ``settings.json``
(``--format settings``; the same block goes in a company's managed settings, README: Keys). The
key travels as ``ANTHROPIC_AUTH_TOKEN`` (sent as ``Authorization: Bearer``, which the proxy
swaps for the company key; Claude Code asks no "use this API key?" question for it).
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from proxy.cli.common import USAGE, CliError
from proxy.config import Settings


def add_commands(sub: Any) -> None:
    group = sub.add_parser("claude-code", help="set Claude Code up to use this proxy")
    commands = group.add_subparsers(title="claude-code commands", metavar="COMMAND")
    env = commands.add_parser("env", help="the environment that points Claude Code here")
    env.add_argument("--key", required=True, help="a tokenmeter key (tmk_…), from keys create")
    env.add_argument("--url", help="the proxy's URL (default http://HOST:PORT of the settings)")
    env.add_argument(
        "--format", choices=("env", "settings"), default="env", help="export lines or JSON"
    )
    env.set_defaults(handler=_env)


def claude_code_env(key: str, url: str) -> dict[str, str]:
    """The variables Claude Code needs to send its traffic through tokenmeter with ``key``."""
    return {
        "ANTHROPIC_BASE_URL": url.rstrip("/"),
        "ANTHROPIC_AUTH_TOKEN": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


def _default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def _env(args: argparse.Namespace, settings: Settings) -> int:
    from proxy.credentials import public_id_of

    if public_id_of(args.key) is None:
        raise CliError("claude-code env: --key must be a tokenmeter key (tmk_…_…)", USAGE)
    env = claude_code_env(args.key, args.url or _default_url(settings))
    if args.format == "settings":
        print(json.dumps({"env": env}, indent=2))
    else:
        for name, value in env.items():
            print(f"export {name}={shlex.quote(value)}")
    return 0
