"""One measured window: drive load at one server, read its CPU and RSS exactly around the window.

JSON workloads use ``wrk`` (C, so the load generator is not the limit) with ``bench/post.lua``;
SSE workloads use ``bench.loadgen`` (aiohttp) because only it times the first SSE event. Either
runs in its own process, pinned to the load core, after a warm-up that is not measured. Without
``wrk`` on the PATH, JSON falls back to ``bench.loadgen`` too.
"""

from __future__ import annotations

import json
import math
import select
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Child, Children, pinned

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Load:
    """What to send: ``workload`` is json or sse; ``url`` the server's /v1/messages."""

    url: str
    workload: str
    concurrency: int
    duration_s: float
    warmup_s: float
    core: int
    api_key: str | None = None  # a tokenmeter key (the tokenmeter-keys server)


@dataclass
class Usage:
    """The server's CPU seconds and RSS around the window (None for direct: no server)."""

    cpu_s: float | None = None
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None


class Probe:
    """Reads the server process's counters at the start and end of the window."""

    def __init__(self, server: Child | None) -> None:
        self.server = server
        self.usage = Usage()
        self._cpu0 = 0.0

    def start(self) -> None:
        if self.server is not None:
            self._cpu0 = self.server.cpu_s()
            self.usage.rss_before_mb = self.server.rss_mb()

    def stop(self) -> None:
        if self.server is not None:
            self.usage.cpu_s = self.server.cpu_s() - self._cpu0
            self.usage.rss_after_mb = self.server.rss_mb()


def measure(children: Children, load: Load, probe: Probe, body_file: Path) -> dict[str, Any]:
    """Run one window; returns the load generator's summary (see ``loadgen.Totals.summary``)."""
    if load.workload == "json" and shutil.which("wrk"):
        return _with_wrk(children, load, probe, body_file)
    return _with_loadgen(children, load, probe)


def _with_wrk(children: Children, load: Load, probe: Probe, body_file: Path) -> dict[str, Any]:
    _run_wrk(children, load, max(1, math.ceil(load.warmup_s)), body_file)
    probe.start()
    result = _run_wrk(children, load, max(1, round(load.duration_s)), body_file)
    probe.stop()
    return result


def _run_wrk(children: Children, load: Load, seconds: int, body_file: Path) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{load.concurrency}", f"-d{seconds}s", "--timeout", "30s"]
    command += ["-s", str(BENCH_DIR / "post.lua"), load.url, "--", str(body_file)]
    command += [load.api_key] if load.api_key else []
    child = children.start("wrk", pinned(command, load.core), env={}, cwd=BENCH_DIR, piped=True)
    try:
        out, _ = child.proc.communicate(timeout=seconds + 60)
    finally:
        children.stop(child)
    return _wrk_summary(out)


def _wrk_summary(out: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no result: {out[-500:]}")
    raw = json.loads(lines[-1])
    elapsed = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    ok = raw["requests"] - raw["status_errors"]
    return {
        "requests": ok,
        "errors": errors + raw["status_errors"],
        "first_error": "" if not errors + raw["status_errors"] else json.dumps(raw),
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": raw["p50_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "ttfe_p50_ms": None,
        "ttfe_p99_ms": None,
        "events": 0,
    }


def _with_loadgen(children: Children, load: Load, probe: Probe) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.loadgen", "--url", load.url, "--sync"]
    command += ["--workload", load.workload, "-c", str(load.concurrency)]
    command += ["--duration", str(load.duration_s), "--warmup", str(load.warmup_s)]
    command += ["--api-key", load.api_key] if load.api_key else []
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(BENCH_DIR.parent)}
    child = children.start(
        "loadgen", pinned(command, load.core), env=env, cwd=BENCH_DIR.parent, piped=True
    )
    try:
        await_line(child, "warm", load.warmup_s + 60)
        probe.start()
        out, _ = child.proc.communicate("go\n", timeout=load.duration_s + 150)
        probe.stop()
    finally:
        children.stop(child)
    return dict(json.loads(out.strip().splitlines()[-1]))


def await_line(child: Child, expected: str, timeout_s: float) -> None:
    stdout = child.proc.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], timeout_s)
    line = stdout.readline().strip() if ready else ""
    if line != expected:
        raise RuntimeError(f"load generator said {line!r}, not {expected!r}: {child.tail()}")
