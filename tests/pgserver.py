"""A private PostgreSQL server for tests that must stop, restart or starve one.

The shared server (``tests/dbfixtures.py``) is never stopped or reconfigured; a test that needs
"server not listening", ``pg_ctl stop -m smart`` or "too many connections" starts this one:
``initdb`` + ``pg_ctl`` in a temporary directory on a free loopback port, as the ``postgres``
system user when the tests run as root (initdb refuses root), torn down at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.servers import free_port


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _as_postgres() -> tuple[Callable[[], None] | None, int | None]:
    if os.getuid() != 0:
        return None, None
    user = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop, user.pw_uid


class PrivatePostgres:
    """One throwaway cluster: ``start()``, ``stop(mode)``, ``url(database)``, ``close()``."""

    def __init__(self, bin_dir: Path, **settings: str) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tokenmeter-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._settings = {"listen_addresses": "127.0.0.1", "fsync": "off", **settings}
        self._drop, uid = _as_postgres()
        if uid is not None:
            os.chown(self.dir, uid, -1)
        self._run("initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", str(self.data))

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - the test's own PostgreSQL tools, no shell
            [str(self.bin / tool), *args],
            preexec_fn=self._drop,  # drops root before exec (initdb refuses root), nothing else
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start(self) -> None:
        options = " ".join(f"-c {key}={value}" for key, value in self._settings.items())
        options += f" -p {self.port} -k {self.dir}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """``pg_ctl stop -m mode``; with ``wait=False`` it returns at once (smart shutdown
        waits for every session to end)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop")

    def stopped(self) -> bool:
        """True once the server is down (``pg_ctl status`` exits 3 when no server runs)."""
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 3

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
