"""The Python load generator: closed-loop aiohttp clients that also time the first SSE event.

``--concurrency`` workers each send one request at a time on a kept-alive connection, for
``--duration`` seconds or ``--max-requests`` in all, whichever comes first, after ``--warmup``
seconds whose results are dropped. With ``--sync`` it prints ``warm`` after the warm-up and waits
for a line on stdin before measuring, so the caller can read the server's CPU counters exactly
around the measured window. The result is one JSON object on stdout (see ``Totals.summary``).

A request counts as an error unless it answers 200 and, for SSE, ends with ``message_stop``.
Run: ``python -m bench.loadgen --url http://127.0.0.1:9001/v1/messages --workload sse -c 16``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import uvloop

from bench import payloads

WORKLOADS = ("json", "sse", "mixed")


@dataclass
class Totals:
    """What the workers saw, in seconds."""

    latencies: list[float] = field(default_factory=list)
    ttfes: list[float] = field(default_factory=list)
    events: int = 0
    errors: int = 0
    first_error: str = ""

    def fail(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        ok = len(self.latencies)
        return {
            "requests": ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "elapsed_s": elapsed_s,
            "rps": ok / elapsed_s if elapsed_s > 0 else 0.0,
            "p50_ms": percentile(self.latencies, 50) * 1e3,
            "p99_ms": percentile(self.latencies, 99) * 1e3,
            "ttfe_p50_ms": percentile(self.ttfes, 50) * 1e3 if self.ttfes else None,
            "ttfe_p99_ms": percentile(self.ttfes, 99) * 1e3 if self.ttfes else None,
            "events": self.events,
        }


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Plan:
    url: str
    workload: str
    concurrency: int
    duration_s: float
    max_requests: int
    bodies: tuple[bytes, bytes]  # (json, sse)
    api_key: str | None = None  # a tokenmeter key instead of the passthrough one


async def one_request(session: aiohttp.ClientSession, plan: Plan, stream: bool, t: Totals) -> None:
    """Send one request, read the whole answer, record latency (and first event for SSE)."""
    started = time.perf_counter()
    body = plan.bodies[1] if stream else plan.bodies[0]
    async with session.post(
        plan.url, data=body, headers=payloads.request_headers(plan.api_key)
    ) as reply:
        if reply.status != 200:
            t.fail(f"HTTP {reply.status}: {(await reply.read())[:200]!r}")
            return
        first, events, tail = None, 0, b""
        async for chunk in reply.content.iter_any():
            first = first or time.perf_counter()
            events += (tail + chunk[:1]).count(b"\n\n") + chunk.count(b"\n\n")
            tail = chunk[-1:]
        ended = time.perf_counter()
    if stream and events != payloads.EVENTS_PER_STREAM:
        t.fail(f"stream ended after {events} events")
        return
    t.latencies.append(ended - started)
    if stream and first is not None:
        t.ttfes.append(first - started)
        t.events += events


async def worker(session: aiohttp.ClientSession, plan: Plan, t: Totals, budget: list[int]) -> None:
    """Send requests back to back until the deadline or the shared request budget runs out."""
    deadline = time.monotonic() + plan.duration_s
    turn = 0
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        stream = plan.workload == "sse" or (plan.workload == "mixed" and turn % 2 == 1)
        turn += 1
        try:
            await one_request(session, plan, stream, t)
        except (TimeoutError, aiohttp.ClientError) as exc:
            t.fail(f"{type(exc).__name__}: {exc}")


async def run_phase(session: aiohttp.ClientSession, plan: Plan) -> dict[str, Any]:
    """All workers for one window; returns ``Totals.summary``."""
    totals, budget = Totals(), [plan.max_requests]
    started = time.perf_counter()
    workers = [worker(session, plan, totals, budget) for _ in range(plan.concurrency)]
    await asyncio.wait_for(asyncio.gather(*workers), timeout=plan.duration_s + 120)
    return totals.summary(time.perf_counter() - started)


async def main_async(plan: Plan, warmup_s: float, sync: bool) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=plan.concurrency, limit_per_host=plan.concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        if warmup_s > 0:
            warm = Plan(**{**plan.__dict__, "duration_s": warmup_s})
            await run_phase(session, warm)
        if sync:
            print("warm", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return await run_phase(session, plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--workload", choices=WORKLOADS, default="json")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--sync", action="store_true", help="wait for stdin after the warm-up")
    parser.add_argument("--api-key", help="send this key (a tokenmeter key) in x-api-key")
    args = parser.parse_args()
    bodies = (payloads.request_body(stream=False), payloads.request_body(stream=True))
    plan = Plan(
        args.url,
        args.workload,
        args.concurrency,
        args.duration,
        args.max_requests,
        bodies,
        args.api_key,
    )
    result = uvloop.run(main_async(plan, args.warmup, args.sync))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
