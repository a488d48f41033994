"""``tokenmeter config``: the effective settings, where each came from, secrets masked.

Every field of ``proxy.config.Settings`` is listed (a new setting shows up with no change here),
with its value and its origin: an argument, a ``TOKENMETER_*`` variable, the config file, or the
default. A secret (a name with token, secret, salt or password in it, or the password of a
database URL) is shown only as whether it is set. Unknown ``TOKENMETER_*`` variables were
already reported by the CLI before this runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from proxy.cli.common import LABELS, shown, shown_origin, shown_url, table
from proxy.config import Settings, config_candidates, config_file, env_name, is_secret, origins


def add_commands(sub: Any) -> None:
    show = sub.add_parser("config", help="the effective settings and where each came from")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_config)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    where = origins(args.settings_overrides, LABELS)
    rows = [
        (name, _value(name, getattr(settings, name)), shown_origin(where[name]), env_name(name))
        for name in Settings.model_fields
    ]
    if args.json:
        keys = ("value", "from", "variable")
        data = {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}
        print(json.dumps({"config_file": _file(), "settings": data}, indent=2))
        return 0
    print(f"config file: {_file() or 'none'} (looked for {_looked_for()})")
    print(table([("setting", "value", "from", "variable"), *rows], left=4))
    return 0


def _value(name: str, value: Any) -> str:
    if value is None or value == {}:
        return "-"
    if is_secret(name):
        return "(set, hidden)"
    if name == "database_url":
        return shown_url(value)
    if isinstance(value, Path):
        return shown(value.absolute())
    if isinstance(value, dict):
        return json.dumps({key: str(item) for key, item in value.items()})
    return str(value).lower() if isinstance(value, bool) else str(value)


def _file() -> str | None:
    path = config_file()
    return None if path is None else shown(path.absolute())


def _looked_for() -> str:
    return ", ".join(shown(path.absolute()) for path in config_candidates())
