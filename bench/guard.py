"""Microbench of the hard-cap check on the hot path: CPU per request of ``BudgetGuard``.

``.venv/bin/python -m bench.guard`` (``--requests N``, ``--repeats R``) times, in-process and
with no I/O, what the forwarder does per metered request when budgets exist:
``admit`` (the budgets covering the caller, the estimate from the body, the lease check) plus
``settle`` (the priced cost replacing the estimate), for

- ``none``: budgets exist, none covers the caller;
- ``three``: a user, a team and an org hard budget cover every request, each with a lease
  that covers it (the state far from a cap: no round trip);

on the bench workload's request body (``bench.payloads.request_body``) and
the real price catalog. The lease store is a stub that grants everything: its round trips
happen once per lease, not per request, and are not what this measures. Each figure is the
median over ``--repeats`` passes after one unmeasured warm-up pass, in microseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal

from bench.payloads import request_body
from proxy.budgets import CounterKey, make_budget
from proxy.guard import BudgetGuard, View
from proxy.pricing.engine import Pricer
from proxy.usage import Attribution


class _Granting:
    holder = "bench"

    async def take(
        self, key: CounterKey, amount: Decimal, chunk: Decimal, need: Decimal
    ) -> tuple[Decimal, Decimal]:
        return chunk, Decimal(0)

    async def give_back(self, key: CounterKey, amount: Decimal) -> None:
        return None

    async def renew(self) -> dict[CounterKey, Decimal]:
        return {}

    async def sweep(self, now: datetime) -> int:
        return 0


def _guard() -> BudgetGuard:
    guard = BudgetGuard(UTC, Pricer(None).estimate)
    guard.leases = _Granting()
    budgets = [
        make_budget("user", "alice", "month", "1000000"),
        make_budget("team", "platform", "month", "1000000"),
        make_budget("org", None, "month", "1000000"),
    ]
    guard.apply(View(budgets), guard.begin_refresh())
    return guard


def _pass(guard: BudgetGuard, who: Attribution, body: bytes, n: int) -> float:
    began = time.process_time()
    for i in range(n):
        ticket = guard.admit("anthropic", who, body)
        if ticket is not None and ticket.short:
            asyncio.run(guard.secure(ticket))
        guard.settle(ticket, f"e{i}", Decimal("0.0123"))
    return (time.process_time() - began) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    body = request_body(stream=True)
    cases = {
        "none": Attribution(user="zoe", team="sales", source="header"),
        "three": Attribution(user="alice", team="platform", source="header"),
    }
    print(f"request body {len(body):,} bytes; {args.requests:,} requests x {args.repeats}")
    for name, who in cases.items():
        guard = _guard()
        if name == "none":  # only the user and team budgets: the org one covers everyone
            guard.apply(View(guard.budgets()[1:]), guard.begin_refresh())
        _pass(guard, who, body, args.requests)  # warm-up: rates cached, the lease taken
        times = [_pass(guard, who, body, args.requests) for _ in range(args.repeats)]
        print(f"{name:>6}: {statistics.median(times):6.2f} us/request (admit + settle)")


if __name__ == "__main__":
    main()
