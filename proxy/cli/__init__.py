"""The ``tokenmeter`` command: serve the proxy, run migrations, read costs from the terminal.

Plain argparse, plain aligned tables, ``--json`` for scripts. Every subcommand reads the same
``TOKENMETER_*`` settings as the server, so ``tokenmeter task show ID`` reads the database that
``tokenmeter serve`` writes. Each module here adds its own subcommands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from proxy.cli import people, prices, reports, server, usage
from proxy.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenmeter", description=__doc__)
    sub = parser.add_subparsers(title="commands")
    for module in (server, usage, reports, people, prices):
        module.add_commands(sub)
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    for name in ("host", "port", "workers"):
        value = getattr(args, name, None)
        if value is not None:
            os.environ[f"TOKENMETER_{name.upper()}"] = str(value)
    handler: Handler = args.handler
    return handler(args, Settings())


if __name__ == "__main__":
    sys.exit(main())
