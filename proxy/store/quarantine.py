"""Rows the database refused for what they hold: kept in ``quarantine.jsonl``, never discarded.

The file lives in the spool directory, in the spool's line format (``rows.row_to_line``) with one
more key, ``_quarantine``: why and when (``{"at": ISO time, "sqlstate": "22003", "error": …}``),
which the write path ignores. ``add`` appends and fsyncs, or raises ``OSError`` (the recorder
then keeps the rows and tries again later). ``entries`` reads them back; ``replay`` writes each
row again and keeps only those still refused; an outage stops it and keeps the rest. Every
change holds an ``flock`` on ``quarantine.lock``, so a running proxy and
``tokenmeter db quarantine replay`` can share the file.

An operator fixes what made a row fail (a column too narrow, a value to correct in the file,
which is plain JSON lines) and replays; ``tokenmeter db quarantine list`` shows what is there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.store.rows import Row, json_to_row, missing_columns, row_to_line
from proxy.store.writes import error_code, is_rows_fault

FILE_NAME = "quarantine.jsonl"
_KEY = "_quarantine"

Write = Callable[[Sequence[Row]], Awaitable[object]]


@dataclass(slots=True)
class Entry:
    """One quarantined row and why the database refused it."""

    row: Row
    reason: dict[str, Any]
    raw: bytes | None = None  # a line that is not a row at all: kept as it is

    @property
    def problem(self) -> str | None:
        """Why this entry cannot even be tried, or None."""
        if self.raw is not None:
            return "unreadable line"
        missing = missing_columns(self.row)
        return f"missing columns: {', '.join(missing)}" if missing else None


def describe(exc: BaseException | str) -> dict[str, Any]:
    """What to keep about a refusal: when, its SQLSTATE (or SQLite code), the message."""
    text = str(exc).strip() or type(exc).__name__
    return {
        "at": datetime.now(UTC).isoformat(),
        "code": None if isinstance(exc, str) else error_code(exc),
        "error": text.splitlines()[0][:500],
    }


def _line(entry: Entry) -> bytes:
    if entry.raw is not None:
        return entry.raw + b"\n"
    return row_to_line({**entry.row, _KEY: entry.reason})


class Quarantine:
    """``quarantine.jsonl`` in ``directory`` (see module doc)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "quarantine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(self, rows: Sequence[Row], reason: dict[str, Any]) -> None:
        """Append ``rows`` with ``reason``, durably, or raise ``OSError``."""
        data = b"".join(_line(Entry(row, reason)) for row in rows)
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if os.write(fd, data) != len(data):
                    os.ftruncate(fd, size)
                    raise OSError(f"short write to {self.path}")
                os.fsync(fd)
            finally:
                os.close(fd)

    def entries(self) -> list[Entry]:
        """Every quarantined row, oldest first."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [_entry(line) for line in text.splitlines() if line.strip()]

    async def replay(self, write: Write) -> tuple[int, list[Entry]]:
        """Write every quarantined row again with ``write``; returns how many went in and the
        entries still here (refused again, or not tried because the database went away)."""
        with self._locked():
            entries = self.entries()
            kept: list[Entry] = []
            done = 0
            for index, entry in enumerate(entries):
                if entry.problem is not None:
                    kept.append(Entry(entry.row, describe(entry.problem), entry.raw))
                    continue
                try:
                    await write([entry.row])
                except Exception as exc:
                    if not is_rows_fault(exc):
                        kept += entries[index:]
                        break
                    kept.append(Entry(entry.row, describe(exc)))
                    continue
                done += 1
            self._rewrite(kept)
        return done, kept

    def _rewrite(self, entries: Sequence[Entry]) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        staging = self.path.with_suffix(".tmp")
        with staging.open("wb") as out:
            out.write(b"".join(map(_line, entries)))
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, self.path)


def _entry(line: bytes) -> Entry:
    try:
        row = json_to_row(line)
    except (ValueError, ArithmeticError, TypeError):
        return Entry({}, {"error": "unreadable line"}, raw=line)
    reason = row.pop(_KEY, None)
    return Entry(row, reason if isinstance(reason, dict) else {})
