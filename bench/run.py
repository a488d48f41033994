"""Run the whole bench: ``.venv/bin/python -m bench.run [--quick] [--with-litellm] [--soak]``.

Starts the mock upstream (fast and realistic ports) and the load generators on one core, each
server under test on the other, and measures every (workload, concurrency, server) window side by
side: ``json`` and ``sse`` against the fast upstream (throughput, CPU), ``json-real`` and
``sse-real`` against the realistic one (added latency, time to first event). Prints a table and
the issue's targets, and writes everything to ``bench/results/<timestamp>.json``.

``--soak`` instead runs tokenmeter under mixed JSON + SSE load for ``--soak-seconds`` (600) and
reports its RSS growth after warm-up. Every child runs in its own process group and is killed on
exit, whatever happens. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import payloads, report
from bench.drive import Load, Probe, measure
from bench.procs import Child, Children, cores, free_port, pinned
from bench.servers import DEFAULT_SERVERS, SERVERS, Setup, launch, litellm_importable
from bench.soak import soak

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = {"fast": ("json", "sse"), "real": ("json-real", "sse-real")}


@dataclass(frozen=True)
class Mock:
    """The running mock upstream: base URLs of its fast and realistic ports."""

    child: Child
    fast: str
    real: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="c=1,16, 2 s windows (~2 min)")
    parser.add_argument("--with-litellm", action="store_true", help="add LiteLLM if importable")
    parser.add_argument("--litellm-python", default=sys.executable, help="python with litellm")
    parser.add_argument("--servers", help=f"comma list from {','.join(SERVERS)}")
    parser.add_argument("--workloads", help="comma list from json,sse,json-real,sse-real")
    parser.add_argument("--concurrency", help="comma list, default 1,16,64,256 (quick: 1,16)")
    parser.add_argument("--duration", type=float, help="seconds per window (5; quick: 2)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (1; quick: 0.5)")
    parser.add_argument("--soak", action="store_true", help="only the RSS soak of tokenmeter")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--logs", type=Path, help="keep the children's logs in this directory")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/<ts>.json)")
    return parser.parse_args(argv)


def plan_of(args: argparse.Namespace) -> dict[str, Any]:
    """Resolved choices: servers, workloads, concurrencies, durations."""
    servers = args.servers.split(",") if args.servers else list(DEFAULT_SERVERS)
    if args.with_litellm and "litellm" not in servers:
        servers.append("litellm")
    unknown = set(servers) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    workloads = (
        args.workloads.split(",") if args.workloads else [w for p in PHASES.values() for w in p]
    )
    default_c = "1,16" if args.quick else "1,16,64,256"
    return {
        "servers": servers,
        "workloads": workloads,
        "concurrency": [int(c) for c in (args.concurrency or default_c).split(",")],
        "duration_s": args.duration or (2.0 if args.quick else 5.0),
        "warmup_s": args.warmup or (0.5 if args.quick else 1.0),
    }


def start_mock(children: Children, load_core: int) -> Mock:
    fast, real = free_port(), free_port()
    command = [sys.executable, "-m", "bench.mock_upstream"]
    command += ["--fast-port", str(fast), "--real-port", str(real)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONPATH": str(RESULTS.parent.parent)}
    child = children.start("mock", pinned(command, load_core), env=env, cwd=RESULTS.parent.parent)
    child.wait_port(fast)
    child.wait_port(real)
    return Mock(child, f"http://127.0.0.1:{fast}", f"http://127.0.0.1:{real}")


def run_server(
    children: Children, name: str, setup: Setup, plan: dict[str, Any], workloads: list[str]
) -> list[report.Row]:
    """Start one server, measure every window of ``workloads`` × concurrency, stop it."""
    try:
        child, url, key = launch(children, name, setup)
    except RuntimeError as exc:
        print(f"  ! {name} did not start, skipped:\n{exc}", file=sys.stderr)
        return []
    rows = []
    try:
        for workload in workloads:
            for concurrency in plan["concurrency"]:
                row = window(children, child, url, name, workload, concurrency, setup, plan, key)
                rows.append(row)
    finally:
        if child is not None:
            children.stop(child)
    return rows


def window(
    children: Children,
    child: Child | None,
    url: str,
    name: str,
    workload: str,
    concurrency: int,
    setup: Setup,
    plan: dict[str, Any],
    key: str | None = None,
) -> report.Row:
    kind = workload.removesuffix("-real")
    load_core = cores()[1]
    load = Load(url, kind, concurrency, plan["duration_s"], plan["warmup_s"], load_core, key)
    probe = Probe(child)
    result = measure(children, load, probe, setup.scratch / "body.json")
    row = {"workload": workload, "concurrency": concurrency, "server": name, **result}
    row.update(probe.usage.__dict__)
    print(
        f"  {workload:<9} c={concurrency:<3} {name:<20} {row['rps']:8.0f} req/s "
        f"p50 {row['p50_ms']:7.1f} ms  errors {row['errors']}",
        file=sys.stderr,
        flush=True,
    )
    return row


def run_matrix(children: Children, plan: dict[str, Any], scratch: Path, args: Any) -> list[Any]:
    server_core, load_core = cores()
    mock = start_mock(children, load_core)
    rows: list[report.Row] = []
    for phase, names in PHASES.items():
        workloads = [w for w in names if w in plan["workloads"]]
        if not workloads:
            continue
        upstream = mock.fast if phase == "fast" else mock.real
        setup = Setup(upstream, server_core, scratch, args.litellm_python)
        for name in plan["servers"]:
            rows += run_server(children, name, setup, plan, workloads)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_of(args)
    server_core, load_core = cores()
    os.sched_setaffinity(0, {load_core})
    if "litellm" in plan["servers"] and not litellm_importable(args.litellm_python):
        print("litellm is not importable here: skipped (see bench/README.md)", file=sys.stderr)
        plan["servers"].remove("litellm")
    started = datetime.now(UTC)
    document: dict[str, Any] = {"started": started.isoformat(), "plan": plan, **_machine()}
    with tempfile.TemporaryDirectory(prefix="tokenmeter-bench-") as tmp:
        scratch = Path(tmp)
        (scratch / "body.json").write_bytes(payloads.request_body(stream=False))
        logs = args.logs or scratch
        logs.mkdir(parents=True, exist_ok=True)
        with Children(logs) as children:
            if args.soak:
                mock = start_mock(children, load_core)
                setup = Setup(mock.fast, server_core, scratch, args.litellm_python)
                document["soak"] = soak(children, setup, args.soak_seconds, load_core)
            else:
                rows = run_matrix(children, plan, scratch, args)
                document.update(_finish(rows, plan))
    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    report.write(out, document)
    print(f"\nresults written to {out}")
    return 0


def _finish(rows: list[report.Row], plan: dict[str, Any]) -> dict[str, Any]:
    """Derive, sort side by side, print the table and the targets; returns them for the JSON."""
    report.derive(rows)
    order = [w for names in PHASES.values() for w in names]
    rows.sort(
        key=lambda r: (
            order.index(r["workload"]),
            r["concurrency"],
            plan["servers"].index(r["server"]),
        )
    )
    print("\n" + report.table(rows))
    print("\ntargets (issue 8), tokenmeter in this run:")
    targets = report.targets(rows)
    for target in targets:
        print(target.line())
    return {"rows": rows, "targets": [{**t.__dict__, "met": t.met()} for t in targets]}


def _machine() -> dict[str, Any]:
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_avg_at_start": os.getloadavg(),
            "unix_time": time.time(),
        }
    }


if __name__ == "__main__":
    sys.exit(main())
