"""The recorder's write-ahead files: every usage row is on local disk before the database has it.

Layout of the spool directory (``TOKENMETER_SPOOL_DIR``), one JSON line per row (``rows``):

- ``owner-<id>.lock``: held (``flock``) by a live ``Spool`` for its whole life, ``<id>`` being
  ``<pid>-<random>``. The kernel releases it when the process dies, even by ``kill -9``.
- ``active-<id>.jsonl``: the segment its owner appends to, one ``write()`` per row.
- ``sealed-<time_ns>-<id>.jsonl``: closed segments waiting for the database, oldest first.
- ``quarantine.jsonl``: rows the database refused (``quarantine.py``).

Contract:

- ``append(line)`` is one ``write()``: in the page cache when it returns, so it survives the
  process being killed. It raises ``OSError`` when the line was not written whole; a short write
  is cut off again (``ftruncate``) so later lines are never glued to a torn one (should the cut
  fail too, the next append starts with a newline, leaving the torn part a line of its own).
- ``sync()`` fsyncs what was appended and sealed since the last call; the recorder calls it at
  most every 100 ms from a thread, so a power cut risks at most that window.
- ``seal()`` renames the active segment to a sealed one and returns its path; the next append
  starts a new active segment. ``remove(path)`` once every row of it is committed.
- ``adopt()`` takes over the files of owners that are gone (their lock is free or its file
  removed), including an earlier life of this very process, by renaming them to this owner: each
  file has exactly one live owner, and only the owner ships or removes it.
- ``read(path)`` yields a segment's rows, ``None`` for a line that cannot be read (torn).
- ``write_segment(lines)`` writes rows that never reached the disk as one whole sealed segment.

``append`` and ``seal`` run on the event loop's thread and take microseconds; ``sync``, ``adopt``,
``read`` and ``write_segment`` run in worker threads. One lock guards the active file
descriptor and is never held across an fsync.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from proxy.store.rows import Row, json_to_row

log = logging.getLogger("tokenmeter.store.spool")

Write = Callable[[int, bytes], int]

_FILE = re.compile(r"^(?:active-(?P<active>.+)|sealed-(?P<ts>\d+)-(?P<sealed>.+))\.jsonl$")


class SpoolWriteError(OSError):
    """A spool write that was short: the line is not on disk."""


def _parse(line: bytes) -> Row | None:
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


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def owner_of(path: Path) -> str | None:
    """The owner id in a segment's file name (None for any other file)."""
    match = _FILE.match(path.name)
    return None if match is None else match["active"] or match["sealed"]


class Spool:
    """The spool directory of one process (see module doc). Touches the disk only when used."""

    def __init__(self, directory: Path, *, write: Write = os.write) -> None:
        self.directory = Path(directory)
        self._write = write  # a seam: tests inject a failing or short writer
        self._lock = threading.Lock()
        self.owner: str | None = None
        self._owner_fd: int | None = None
        self._fd: int | None = None
        self._size = 0  # bytes of whole lines in the active segment
        self._torn = False  # the active segment ends in a part-line that could not be cut
        self._dirty = False  # appended since the last sync
        self._unsynced: list[int] = []  # sealed segments' descriptors, fsynced then closed
        self._dir_dirty = False

    # -- owner --------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory and take this process's owner lock (idempotent)."""
        with self._lock:
            self._open_owner()

    def _open_owner(self) -> str:
        if self.owner is not None:
            return self.owner
        self.directory.mkdir(parents=True, exist_ok=True)
        owner = f"{os.getpid()}-{secrets.token_hex(3)}"
        staging = self.directory / f".owner-{owner}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, self._lock_path(owner))  # nobody ever sees it unlocked
        self.owner, self._owner_fd = owner, fd
        return owner

    def _lock_path(self, owner: str) -> Path:
        return self.directory / f"owner-{owner}.lock"

    def close(self) -> None:
        """Sync and close every file and release the owner lock. An active segment that still
        holds rows stays, to be adopted by the next owner."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                self._unsynced.append(fd)
            if self.owner is not None and self._size == 0 and not self._torn:
                self._active_path().unlink(missing_ok=True)
        self.sync()
        with self._lock:
            if self._owner_fd is not None and self.owner is not None:
                self._lock_path(self.owner).unlink(missing_ok=True)
                os.close(self._owner_fd)
            self.owner, self._owner_fd = None, None

    # -- the write-ahead path -----------------------------------------------------------------

    @property
    def active_path(self) -> Path | None:
        """The segment this owner appends to (None before the spool is opened)."""
        return None if self.owner is None else self._active_path()

    def _active_path(self) -> Path:
        return self.directory / f"active-{self.owner}.jsonl"

    def _free_name(self, stamp: int) -> Path:
        """A sealed segment name of this owner that no file has (under the lock: only this
        owner makes names with its id, so nothing can take it before the rename)."""
        while (path := self.directory / f"sealed-{stamp:020d}-{self.owner}.jsonl").exists():
            stamp += 1
        return path

    def append(self, line: bytes) -> None:
        """One ``write()`` of one whole line, or ``OSError`` (see module doc)."""
        with self._lock:
            fd = self._fd if self._fd is not None else self._open_active()
            data = b"\n" + line if self._torn else line
            try:
                written = self._write(fd, data)
            except OSError:
                self._cut(fd)
                raise
            if written != len(data):
                self._cut(fd)
                raise SpoolWriteError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")
            self._size += written
            self._torn = False
            self._dirty = True

    def _open_active(self) -> int:
        self._open_owner()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._active_path(), flags, 0o600)
        self._size, self._torn = 0, False
        return self._fd

    def _cut(self, fd: int) -> None:
        """Remove whatever part of a failed line reached the file."""
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            self._torn = True

    def seal(self) -> Path | None:
        """Close the active segment into a sealed one; its path, or None if there was none."""
        with self._lock:
            fd = self._fd
            if fd is None:
                return None
            if self._size == 0 and not self._torn:  # every write failed: nothing to keep
                self._fd = None
                os.close(fd)
                self._active_path().unlink(missing_ok=True)
                return None
            sealed = self._free_name(time.time_ns())
            os.rename(self._active_path(), sealed)  # on failure the active segment stays open
            self._fd, self._size, self._torn = None, 0, False
            self._unsynced.append(fd)
            self._dir_dirty = True
            return sealed

    @property
    def needs_sync(self) -> bool:
        return self._dirty or bool(self._unsynced) or self._dir_dirty

    def sync(self) -> None:
        """fsync what was appended and sealed since the last call (in a worker thread)."""
        with self._lock:
            active = os.dup(self._fd) if self._dirty and self._fd is not None else None
            sealed, self._unsynced = self._unsynced, []
            directory, self._dirty, self._dir_dirty = self._dir_dirty, False, False
        errors = []
        for fd in (*sealed, *([] if active is None else [active])):
            try:
                _fsync_close(fd)
            except OSError as exc:
                errors.append(exc)
        if directory:
            _fsync_dir(self.directory)
        if errors:
            raise errors[0]

    # -- segments -----------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Every sealed segment in the directory, whoever owns it, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("sealed-*.jsonl"))

    def read(self, segment: Path) -> Iterator[Row | None]:
        """The rows of one segment in the order they were written; None for a torn line."""
        with segment.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                row = _parse(line)
                if row is None and line.strip():
                    log.warning("spool %s line %d unreadable (torn write?)", segment, number)
                if row is not None or line.strip():
                    yield row

    def remove(self, segment: Path) -> None:
        """Forget a segment whose rows are committed."""
        segment.unlink(missing_ok=True)

    def write_segment(self, lines: Sequence[bytes]) -> Path:
        """Write ``lines`` as one new sealed segment, durably; its path, or ``OSError``."""
        with self._lock:
            owner = self._open_owner()
        staging = self.directory / f".segment-{owner}-{time.time_ns()}.tmp"
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                self._write_all(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            with self._lock:
                target = self._free_name(time.time_ns())
                os.rename(staging, target)
        except OSError:
            staging.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        return target

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._write(fd, view)  # type: ignore[arg-type]  # a memoryview is bytes-like
            if written <= 0:
                raise SpoolWriteError(errno.ENOSPC, "short write")
            view = view[written:]

    # -- adoption -----------------------------------------------------------------------------

    def adopt(self) -> list[Path]:
        """Take over the segments of owners that are gone; the sealed paths this owner now has
        because of it, oldest first (see module doc)."""
        if not self.directory.is_dir():
            return []
        with self._lock:
            mine = self._open_owner()
        files: dict[str, list[Path]] = {}
        for path in self.directory.iterdir():
            owner = owner_of(path)
            if owner is not None and owner != mine:
                files.setdefault(owner, []).append(path)
        taken: list[Path] = []
        for owner, paths in files.items():
            with self._if_gone(owner) as gone:
                if gone:
                    taken += filter(None, map(self._take, paths))
        if taken:
            _fsync_dir(self.directory)
        return sorted(taken)

    @contextlib.contextmanager
    def _if_gone(self, owner: str) -> Iterator[bool]:
        """Yields True, holding its lock, when ``owner`` is no longer alive."""
        path = self._lock_path(owner)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # released at a clean stop, or written before owner locks
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            yield True
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _take(self, path: Path) -> Path | None:
        """Rename one file of a gone owner to a sealed segment of this owner, keeping its place
        in time (an active file is the newest). None when there was nothing to take."""
        match = _FILE.match(path.name)
        if match is None:
            return None
        try:
            if path.stat().st_size == 0:
                path.unlink()
                return None
            with self._lock:
                target = self._free_name(int(match["ts"] or time.time_ns()))
                os.rename(path, target)
        except FileNotFoundError:  # another live owner took it first
            return None
        return target
