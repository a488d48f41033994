"""A local, fsync'd JSON-lines file that holds usage rows while the database is unreachable.

Contract:
- ``append(rows)`` returns only after the lines are on disk (write + fsync); it raises ``OSError``
  when they could not be written, so the caller can count them as dropped.
- Each process appends to its own ``active-<pid>.jsonl``. ``seal()`` renames it to
  ``sealed-<time_ns>-<pid>.jsonl``; ``segments()`` lists sealed files oldest first. A replayer
  reads a segment, commits its rows, and only then ``remove()``s it, so a crash in between
  replays the segment again (the writer is idempotent by ``event_id``).
- ``adopt_orphans()`` seals the active files of processes that are gone (a crashed replica).
- A torn last line (power loss mid-write) is skipped with a warning, never fatal.

Methods are synchronous and thread-safe: the recorder calls them from a worker thread, except
on the overload path where ``submit`` must not await anything.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from proxy.store.rows import Row, json_to_row, row_to_json

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(line: str) -> Row | None:
    try:
        return json_to_row(line)
    except (ValueError, ArithmeticError, TypeError):
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool directory (see module doc). Nothing touches the disk until first used."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._dirty = False  # this process appended since its last seal

    @property
    def active_path(self) -> Path:
        return self.directory / f"active-{os.getpid()}.jsonl"

    @property
    def dirty(self) -> bool:
        """True when this process has spooled rows that no replay has picked up yet."""
        return self._dirty

    def append(self, rows: Sequence[Row]) -> None:
        """Write ``rows`` durably, or raise ``OSError``."""
        if not rows:
            return
        data = "".join(row_to_json(row) + "\n" for row in rows).encode()
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.active_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._dirty = True

    def seal(self) -> None:
        """Close this process's active file into a segment that replays can take."""
        with self._lock:
            self._dirty = False
            self._seal(self.active_path)

    def _seal(self, active: Path) -> None:
        try:
            if active.stat().st_size == 0:
                active.unlink()
                return
        except FileNotFoundError:
            return
        pid = active.stem.removeprefix("active-")
        active.rename(self.directory / f"sealed-{time.time_ns():020d}-{pid}.jsonl")
        _fsync_dir(self.directory)

    def adopt_orphans(self) -> None:
        """Seal the active files left by processes that no longer run."""
        if not self.directory.is_dir():
            return
        with self._lock:
            for active in sorted(self.directory.glob("active-*.jsonl")):
                pid = active.stem.removeprefix("active-")
                if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
                    self._seal(active)

    def segments(self) -> list[Path]:
        """Sealed segments, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("sealed-*.jsonl"))

    def read(self, segment: Path) -> Iterator[Row]:
        """The rows of one segment, in the order they were spooled."""
        with segment.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                row = _parse(line)
                if row is None:
                    log.warning(
                        "spool %s line %d unreadable (torn write?): skipped", segment, number
                    )
                    continue
                yield row

    def remove(self, segment: Path) -> None:
        """Forget a segment whose rows are committed (another replica may have done it first)."""
        segment.unlink(missing_ok=True)
