"""The real Claude Code CLI for tests: installed once from npm at a pinned version, run offline.

``claude_binary()`` installs ``@anthropic-ai/claude-code@VERSION`` with npm into a cache outside
the clone (``$TOKENMETER_TEST_CACHE``, default ``~/.cache/tokenmeter-tests``), so reruns and
other checkouts reuse it; the version is pinned because the CLI's requests are what the tests
assert on (2.1.197 is the newest release that runs on the Node.js 20 this machine has; later
ones need Node.js 22). Without npm the tests that need it skip with the reason, or fail under
``CI=true``.

``run_claude(...)`` runs ``claude -p PROMPT`` against a base URL (the proxy, in front of the fake
Anthropic API) in an isolated ``HOME`` with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``, so it
never reaches the internet, and returns the finished process. ``ClaudeTty`` runs it interactive
in a pseudo-terminal, where the status line runs too.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pyte
import pytest

VERSION = "2.1.197"
PACKAGE = "@anthropic-ai/claude-code"


def cache_dir() -> Path:
    root = os.environ.get("TOKENMETER_TEST_CACHE") or str(Path.home() / ".cache/tokenmeter-tests")
    return Path(root) / f"claude-code-{VERSION}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def claude_binary() -> Path:
    """The ``claude`` executable of the pinned version, installed on first use."""
    prefix = cache_dir()
    binary = prefix / "node_modules/.bin/claude"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed: the real Claude Code CLI cannot be installed")
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - npm with fixed arguments
        [
            str(npm),
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(prefix),
            f"{PACKAGE}@{VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not binary.exists():
        _unavailable(f"npm install {PACKAGE}@{VERSION} failed: {done.stderr[-500:]}")
    return binary


def claude_env(home: Path, base_url: str, **extra: str) -> dict[str, str]:
    """The environment of an offline Claude Code run: its own HOME, the proxy as its API."""
    home.mkdir(parents=True, exist_ok=True)
    keep = ("PATH", "LANG", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env |= {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return env | extra


def run_claude(
    prompt: str,
    *,
    home: Path,
    base_url: str,
    cwd: Path | None = None,
    args: tuple[str, ...] = (),
    timeout_s: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``claude -p PROMPT [args]``; ``env`` adds variables (e.g. ``ANTHROPIC_API_KEY``)."""
    return subprocess.run(  # noqa: S603 - the pinned CLI with our own arguments
        [str(claude_binary()), "-p", prompt, *args],
        cwd=cwd or home,
        env=claude_env(home, base_url, **env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


ROWS, COLUMNS = 40, 250


class ClaudeTty:
    """``claude PROMPT`` interactive in a pseudo-terminal: the status line runs only there (not
    in ``-p`` mode). The working directory is trusted and onboarding done beforehand (in
    ``HOME/.claude.json``), so nothing waits for a click. ``screen`` is the terminal's text as a
    person would see it now (pyte, a terminal emulator, applies what the CLI drew)."""

    def __init__(self, prompt: str, *, home: Path, base_url: str, cwd: Path, **env: str) -> None:
        state = {
            "hasCompletedOnboarding": True,
            "theme": "dark",
            "projects": {str(cwd): {"hasTrustDialogAccepted": True}},
        }
        claude_env(home, base_url)
        (home / ".claude.json").write_text(json.dumps(state))
        binary = str(claude_binary())
        environment = claude_env(home, base_url, TERM="xterm-256color", **env)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: never returns
            os.chdir(cwd)
            os.execve(binary, [binary, prompt], environment)  # noqa: S606 - the pinned CLI
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self._screen = pyte.Screen(COLUMNS, ROWS)
        self._stream = pyte.ByteStream(self._screen)

    @property
    def screen(self) -> str:
        return "\n".join(line.rstrip() for line in self._screen.display)

    def wait_for(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        """The first match of ``pattern`` on the screen, reading until it is drawn."""
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(pattern, self.screen)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} never drawn; screen:\n{self.screen[-3000:]}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    self._stream.feed(os.read(self.fd, 65536))
                except OSError:  # the CLI ended
                    raise AssertionError(f"claude ended; screen:\n{self.screen[-3000:]}") from None
        return found

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
