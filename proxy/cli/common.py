"""Helpers every command shares: the database a command opens, aligned tables (``table``; a
report's figures are formatted by ``tables``), time arguments, and the one exception a handler
raises to fail (``CliError``: a one-line message and an exit status, printed by the error
boundary in ``proxy.cli``).

A command opens the database with ``run_with_engine``, which never creates one: a missing SQLite
file, an unreachable server or an unmigrated schema is a ``CliError`` saying which database was
looked for, where that choice came from, and how to point tokenmeter elsewhere. Only
``tokenmeter serve`` and ``tokenmeter db upgrade`` create a database.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from proxy.config import Settings
from proxy.text import CONTROL
from proxy.usage import as_utc

USAGE, RUNTIME = 2, 1  # exit statuses: the command line or configuration is wrong / it failed


class CliError(Exception):
    """A command failed in a way its user can fix: ``str(self)`` is the one-line reason."""

    def __init__(self, message: str, status: int = RUNTIME) -> None:
        super().__init__(message)
        self.status = status


@contextmanager
def refused(*errors: type[Exception], status: int = RUNTIME) -> Iterator[None]:
    """Turn the domain errors a call may raise into ``CliError`` with their own message."""
    try:
        yield
    except errors as exc:
        raise CliError(str(exc), status) from exc


# Controls (and bidirectional overrides) would move the cursor, colour the terminal or reorder
# the line: shown escaped. Recorded names can't hold them; people and task records might.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def table(rows: Sequence[tuple[str, ...]], left: int = 1) -> str:
    """Aligned columns: the first ``left`` flush left (names), the rest flush right (numbers).
    Alignment counts terminal columns, so names in CJK or with accents line up; control
    characters are shown escaped."""
    safe = [tuple(map(_visible, row)) for row in rows]
    widths = [max(_width(row[i]) for row in safe) for i in range(len(safe[0]))]
    lines = []
    for row in safe:
        cells = [
            _pad(cell, width, flush_left=i < left)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _pad(cell: str, width: int, *, flush_left: bool) -> str:
    blank = " " * (width - _width(cell))
    return cell + blank if flush_left else blank + cell


def _visible(text: str) -> str:
    # Controls (and bidirectional overrides) would move the cursor, colour the terminal or
    # reorder the line: shown escaped. Recorded names can't hold them; older records might.
    return CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two, combining and format ones none."""
    if text.isascii():
        return len(text)
    return sum(
        0
        if unicodedata.combining(c) or unicodedata.category(c) == "Cf"
        else 2
        if unicodedata.east_asian_width(c) in "WF"
        else 1
        for c in text
    )


_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
SINCE_HELP = "how far back: 24h, 7d, 2w, or a UTC date/time like 2026-11-01"


def since(text: str | datetime) -> datetime:
    """``--since``: ``24h``, ``7d``, ``2w`` ago, or an ISO date/time (UTC unless it has an
    offset), not in the future. An argparse type; a ``datetime`` passes through unchanged."""
    if isinstance(text, datetime):
        return text
    now = datetime.now(UTC)
    if text[-1:] in _UNITS and text[:-1].isdigit():
        return now - int(text[:-1]) * _UNITS[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 24h, 7d, 2w, or a date like 2026-11-01"
        ) from None
    moment = as_utc(moment)
    if moment > now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the future")
    return moment


def read_text(path: Path) -> str:
    """A file the user named, as UTF-8 text; a ``CliError`` (usage) saying why not."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", USAGE) from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text: {exc.reason}", USAGE) from exc


def shown(path: Path | str) -> str:
    """A path as a person would type it: under the home directory as ``~/…``."""
    path, home = Path(path), Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def shown_url(url: str) -> str:
    """A database URL without its password, its SQLite path shortened as ``shown`` does."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"sqlite+aiosqlite:///{shown(Path(parsed.database).absolute())}"
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


ARGUMENTS: dict[str, object] = {}  # settings given on this command line (set by ``main``)
LABELS = {"database_url": "--database"}


def _came_from() -> str:
    from proxy.config import origins

    came = origins(ARGUMENTS, LABELS).get("database_url", "default")
    return "the default" if came == "default" else f"from {shown_origin(came)}"


def shown_origin(origin: str) -> str:
    """``origins()``'s text with a config file's path shortened."""
    name, sep, path = origin.partition(" in ")
    return f"{name} in {shown(path)}" if sep else origin


_ELSEWHERE = "point at yours with --database URL or TOKENMETER_DATABASE_URL (see tokenmeter config)"


def missing_database(settings: Settings) -> CliError | None:
    """The error to give when the configured SQLite database does not exist, else None."""
    path = sqlite_path(settings.database_url)
    if path is None or path.exists():
        return None
    old = Path("tokenmeter.db")
    hint = f"; ./{old} here is from an older tokenmeter" if old.exists() else ""
    return CliError(
        f"no database at {shown(path)} ({_came_from()}): the proxy creates it when it starts "
        f"(tokenmeter serve), or {_ELSEWHERE}{hint}"
    )


def run_with_engine(
    settings: Settings, work: Callable[[Any], Any], *, migrated: bool = True
) -> Any:
    """Run ``work(engine)`` on the configured database, which must exist (and, when
    ``migrated``, be at the latest migration); never creates one."""
    from proxy.store.engine import make_engine

    if (error := missing_database(settings)) is not None:
        raise error

    async def run() -> Any:
        engine = make_engine(settings.database_url)
        try:
            if migrated:
                await check_revision(engine, settings)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def check_revision(engine: Any, settings: Settings) -> None:
    """``CliError`` unless the database answers and is at the latest migration."""
    have, want = await revisions(engine, settings)
    name = shown_url(settings.database_url)
    if have is None:
        raise CliError(f"{name} has no tokenmeter tables: run tokenmeter db upgrade")
    if have != want:
        raise CliError(
            f"{name} is at revision {have}, this tokenmeter needs {want}: run tokenmeter db upgrade"
        )


async def revisions(engine: Any, settings: Settings) -> tuple[str | None, str | None]:
    """(the database's revision, the latest one this tokenmeter ships)."""
    from proxy.store.engine import head_revision, revision

    try:
        have = await revision(engine)
    except Exception as exc:  # unreachable server, bad credentials, not a database file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = shown_url(settings.database_url)
        raise CliError(f"cannot open {where} ({_came_from()}): {reason}; {_ELSEWHERE}") from exc
    return have, head_revision()
