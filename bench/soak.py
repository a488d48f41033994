"""The soak: tokenmeter under steady mixed JSON + SSE load, its RSS sampled until the end.

Growth is measured from the end of the warm-up (first requests allocate pools and caches once)
to the end of the run; the issue's target is at most 10 MB over 10 minutes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bench.drive import await_line
from bench.procs import Child, Children, pinned
from bench.servers import REPO, Setup, launch

SOAK_CONCURRENCY = 16
WARMUP_S = 5.0


def soak(children: Children, setup: Setup, seconds: float, load_core: int) -> dict[str, Any]:
    """Run the soak; prints and returns the RSS samples and the growth in MB."""
    server, url, _ = launch(children, "tokenmeter", setup)
    assert server is not None
    load = _start_load(children, url, seconds, load_core)
    await_line(load, "warm", WARMUP_S + 60)
    samples = [(0.0, server.rss_mb())]
    assert load.proc.stdin is not None
    load.proc.stdin.write("go\n")
    load.proc.stdin.flush()
    samples += _sample(server, load, seconds)
    out, _ = load.proc.communicate(timeout=120)
    result: dict[str, Any] = {
        "seconds": seconds,
        "rss_samples_mb": samples,
        "rss_growth_mb": samples[-1][1] - samples[0][1],
        "load": json.loads(out.strip().splitlines()[-1]) if out.strip() else None,
    }
    loaded_s = result["load"]["elapsed_s"] if result["load"] else 0.0
    print(
        f"soak: {loaded_s:.0f} s of mixed load at c={SOAK_CONCURRENCY}; RSS "
        f"{samples[0][1]:.1f} MB -> {samples[-1][1]:.1f} MB "
        f"(growth {result['rss_growth_mb']:+.1f} MB, target <= 10 MB)"
    )
    return result


def _start_load(children: Children, url: str, seconds: float, core: int) -> Child:
    command = [sys.executable, "-m", "bench.loadgen", "--url", url, "--workload", "mixed"]
    command += ["-c", str(SOAK_CONCURRENCY), "--duration", str(seconds)]
    command += ["--warmup", str(WARMUP_S), "--sync"]
    command += ["--max-requests", str(10**9)]  # time ends the soak, not loadgen's request budget
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return children.start("soak-load", pinned(command, core), env=env, cwd=REPO, piped=True)


def _sample(server: Child, load: Child, seconds: float) -> list[tuple[float, float]]:
    """RSS every ~1/20 of the run (at least every 30 s) until the load ends or time is up."""
    interval = min(30.0, max(1.0, seconds / 20))
    started, samples = time.monotonic(), []
    deadline = started + seconds + 60
    while load.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(interval)
        samples.append((round(time.monotonic() - started, 1), server.rss_mb()))
        print(f"  soak t={samples[-1][0]:>6.0f}s rss {samples[-1][1]:.1f} MB", file=sys.stderr)
    return samples
