"""Child processes of the bench: pinned to a core, each in its own process group, always killed.

``Child`` starts a command with ``taskset -c CORE`` (so every thread it ever makes is pinned) in
a new session, waits for its port, and reads its CPU time and RSS from ``/proc`` summed over the
process and its descendants (uvicorn workers, helper threads are counted once). ``stop()`` sends
SIGTERM to the whole group, then SIGKILL after a grace period; ``Children`` is a context manager
that stops everything it started, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cores() -> tuple[int, int]:
    """(core for the server under test, core for mock + load generator)."""
    available = sorted(os.sched_getaffinity(0))
    return (available[0], available[-1])


def pinned(command: Sequence[str], core: int) -> list[str]:
    """``command`` run on ``core`` only (unpinned if taskset is missing)."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *command] if taskset else list(command)


class Child:
    """One started process; ``name`` is for messages, ``log`` collects its output."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path,
        piped: bool = False,
    ) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                list(command),
                env=env,
                cwd=cwd,
                stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                stdout=subprocess.PIPE if piped else out,
                stderr=out if piped else subprocess.STDOUT,
                start_new_session=True,
                text=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_port(self, port: int, timeout_s: float = 60.0) -> None:
        """Block until ``port`` accepts connections; raise with the log tail if it never does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {port} in {timeout_s}s: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process and its descendants so far."""
        return sum(_cpu_s(pid) for pid in _tree(self.pid))

    def rss_mb(self) -> float:
        """Resident memory of the process and its descendants, in MB."""
        return sum(_rss_bytes(pid) for pid in _tree(self.pid)) / 1e6

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after ``grace_s``."""
        if self.proc.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class Children:
    """Every child started in a ``with`` block is stopped when it ends, even on error."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._started: list[Child] = []

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        piped: bool = False,
    ) -> Child:
        """Start ``command``; with ``piped`` its stdin/stdout are pipes, stderr goes to the log."""
        log = self.logs / f"{name}.log"
        child = Child(name, command, env=env, cwd=cwd, log=log, piped=piped)
        self._started.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        self._started.remove(child)

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for child in reversed(self._started):
            child.stop()
        self._started.clear()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _stat_fields(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rsplit(")", 1)[1].split()  # fields after "(comm)", which may hold spaces


def _cpu_s(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0  # utime, stime


def _rss_bytes(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[21]) * _PAGE if fields else 0


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the ppid column of /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo and len(found) < 10_000:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found
