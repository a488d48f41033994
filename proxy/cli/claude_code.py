"""``tokenmeter claude-code``: tie Claude Code sessions to the work they are part of.

- ``install [--user|--project]`` writes the client, ``proxy/claude_code.sh`` (POSIX sh, git and
  curl; ~10 ms of its own), beside Claude Code's ``settings.json`` as
  ``tokenmeter-claude-code.sh``, and merges into ``settings.json`` (a copy of the old file kept
  beside it as ``settings.json.bak``) a SessionStart and a Stop hook and a status line, each
  running it pointed at this proxy (``--url``). A ``--project`` install names the script by
  ``$CLAUDE_PROJECT_DIR``, so the settings and the script can be committed and work in every
  clone; a ``--user`` install by its absolute path. It never clobbers: other hooks stay, our own
  entries are replaced (installing twice is the same as once; the Python client of earlier
  releases, ``proxy.claude_hook``, is replaced too), and a status line something else set is
  kept unless ``--statusline`` is given. A settings file that is not JSON is left alone with an
  error.
- ``env --key tmk_…`` prints the settings that point Claude Code at this proxy: shell ``export``
  lines (default) or the ``env`` block of a ``settings.json`` (``--format settings``; the same
  block goes in a company's managed settings, README: Keys). The key travels as
  ``ANTHROPIC_AUTH_TOKEN`` (sent as ``Authorization: Bearer``, which the proxy swaps for the
  company key; Claude Code asks no "use this API key?" question for it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
from importlib.resources import files
from pathlib import Path
from typing import Any

from proxy.cli.common import USAGE, CliError
from proxy.config import Settings

HOOK_EVENTS = ("SessionStart", "Stop")
SCRIPT = "tokenmeter-claude-code.sh"
_OURS = (SCRIPT, "proxy.claude_hook")  # the latter: the Python client of earlier releases


def add_commands(sub: Any) -> None:
    group = sub.add_parser("claude-code", help="connect Claude Code sessions to their work")
    commands = group.add_subparsers(title="claude-code commands", metavar="COMMAND")
    install = commands.add_parser("install", help="add tokenmeter's hooks and status line")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="~/.claude/settings.json (default)")
    where.add_argument("--project", action="store_true", help="./.claude/settings.json")
    install.add_argument("--url", help="tokenmeter's URL (default: http://HOST:PORT)")
    install.add_argument(
        "--statusline", action="store_true", help="replace a status line set by something else"
    )
    install.set_defaults(handler=_install)
    env = commands.add_parser("env", help="the environment that points Claude Code here")
    env.add_argument("--key", required=True, help="a tokenmeter key (tmk_…), from keys create")
    env.add_argument("--url", help="the proxy's URL (default http://HOST:PORT of the settings)")
    env.add_argument(
        "--format", choices=("env", "settings"), default="env", help="export lines or JSON"
    )
    env.set_defaults(handler=_env)


# --- env ----------------------------------------------------------------------------------------


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


# --- install ---------------------------------------------------------------------------------


def _install(args: argparse.Namespace, settings: Settings) -> int:
    base = Path.cwd() if args.project else Path.home()
    path = base / ".claude" / "settings.json"
    url = args.url or _default_url(settings)
    current = _read_settings(path)
    where = f'"$CLAUDE_PROJECT_DIR"/.claude/{SCRIPT}' if args.project else None
    script = path.with_name(SCRIPT)
    command = f"sh {where or shlex.quote(str(script))}"
    merged, kept = merge_settings(current, command, url, replace_statusline=args.statusline)
    path.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(client_script())
    if path.exists():
        shutil.copy2(path, path.with_name(path.name + ".bak"))
        print(f"kept the previous settings as {path.name}.bak")
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"installed tokenmeter's hooks ({', '.join(HOOK_EVENTS)}) in {path}, posting to {url}")
    print(f"wrote the hook and status line client to {script}")
    if kept:
        print("kept the existing status line (use --statusline to replace it)")
    return 0


def client_script() -> str:
    """The hook and status line client (``proxy/claude_code.sh``)."""
    return files("proxy").joinpath("claude_code.sh").read_text()


def _read_settings(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text() or "{}")
    except (OSError, ValueError) as exc:
        raise CliError(f"{path} is not JSON ({exc}): fix it first, nothing was changed") from exc
    if not isinstance(found, dict):
        raise CliError(f"{path} is not a JSON object: fix it first, nothing was changed")
    return found


def merge_settings(
    current: dict[str, Any], command: str, url: str, *, replace_statusline: bool = False
) -> tuple[dict[str, Any], bool]:
    """``current`` with tokenmeter's hooks and status line; True when a status line set by
    something else was kept."""
    merged = json.loads(json.dumps(current))
    hooks = merged.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise CliError("settings.json: hooks is not an object: fix it first, nothing was changed")
    quoted_url = shlex.quote(url)
    for event in HOOK_EVENTS:
        entries = [e for e in hooks.get(event, []) if not _is_ours(e)]
        ours = {"type": "command", "command": f"{command} hook {quoted_url}"}
        hooks[event] = [*entries, {"hooks": [{**ours, "timeout": 5}]}]
    line = merged.get("statusLine")
    kept = isinstance(line, dict) and not _is_ours(line) and not replace_statusline
    if not kept:
        statusline = f"{command} statusline {quoted_url}"
        merged["statusLine"] = {"type": "command", "command": statusline}
    return merged, kept


def _is_ours(entry: Any) -> bool:
    found = json.dumps(entry)
    return any(name in found for name in _OURS)
