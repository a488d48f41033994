"""The ``tokenmeter`` command: serve the proxy, run migrations, read costs from the terminal.

Plain argparse, plain aligned tables, ``--json`` for scripts. Every command reads the same
settings as the server (``proxy.config``: arguments, ``TOKENMETER_*``, ``tokenmeter.toml``), so
``tokenmeter task show ID`` reads the database that ``tokenmeter serve`` writes, from any
directory. Each module here adds its own subcommands; ``build_parser`` then gives every parser
in the tree the global options (``--database``, ``--config``, ``--debug``), so a new subcommand
has them with no list to keep. An option whose ``dest`` is a setting's name (``--port`` →
``port``, ``--database`` → ``database_url``) overrides that setting.

The one error boundary is ``main``: a usage error (unknown option, bad value, bad setting) is one
line on stderr and exit status 2; a failure at run time (``CliError``, no database, an
unexpected exception) is one line and exit status 1; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from proxy.cli import (
    backfill,
    budgets,
    claude_code,
    common,
    keys,
    people,
    prices,
    reconcile,
    reports,
    seats,
    server,
    settings,
    usage,
    work,
)
from proxy.cli.common import RUNTIME, USAGE, CliError
from proxy.config import CONFIG_VARIABLE, Settings, SettingsError, load_settings, unknown_variables

Handler = Callable[[argparse.Namespace, Settings], int]
COMMAND_MODULES = (
    server,
    usage,
    reports,
    reconcile,
    people,
    seats,
    prices,
    keys,
    budgets,
    settings,
    claude_code,
    work,
    backfill,
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``tokenmeter usage: argument --by: invalid …``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(
        prog="tokenmeter",
        description="What agentic work really costs: serve the metering proxy, read its costs.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    for each in walk(parser):
        _add_global_options(each)
        if children(each):
            each.set_defaults(command_group=each)
    return parser


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser of the command tree, the root first."""
    yield parser
    for child in dict.fromkeys(children(parser).values()):  # an alias names a child twice
        yield from walk(child)


def children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name ({} for a command that runs something)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found |= action.choices
    return found


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--database",
        dest="database_url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="sqlite+aiosqlite:///PATH or postgresql+asyncpg://… (default: see tokenmeter config)",
    )
    group.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"settings file (TOML; else ${CONFIG_VARIABLE}, ./tokenmeter.toml, "
        "$XDG_CONFIG_HOME/tokenmeter/tokenmeter.toml)",
    )
    group.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tokenmeter usage | head -1`: the reader has all it wanted
        _quiet_stdout()
        return 141  # as a shell reports a command ended by SIGPIPE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message, status = _explain(exc)
        print(f"tokenmeter: {message}", file=sys.stderr)
        return status


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is still buffered
    for the closed pipe does not print a second error at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _explain(exc: Exception) -> tuple[str, int]:
    """The one line and the exit status for an exception that reached the boundary."""
    if isinstance(exc, CliError):
        return str(exc), exc.status
    if isinstance(exc, SettingsError):
        return str(exc), USAGE
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return f"unexpected error: {what} (run with --debug for the traceback)", RUNTIME


def _dispatch(args: argparse.Namespace) -> int:
    if hasattr(args, "config"):
        os.environ[CONFIG_VARIABLE] = args.config  # also for `serve`'s worker processes
    for message in unknown_variables():
        print(f"tokenmeter: warning: {message}", file=sys.stderr)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        group: argparse.ArgumentParser = args.command_group
        where = group.prog.removeprefix("tokenmeter").strip()
        names = ", ".join(children(group))
        message = f"choose a command: {names} (see {group.prog} --help)"
        raise CliError(f"{where}: {message}" if where else message, USAGE)
    args.settings_overrides = {
        name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)
    }
    common.ARGUMENTS.clear()
    common.ARGUMENTS.update(args.settings_overrides)
    return handler(args, load_settings(args.settings_overrides, common.LABELS))


if __name__ == "__main__":
    sys.exit(main())
