"""Two proxies on one PostgreSQL, 32 concurrent clients against one $0.05 hard cap: how far the
recorded spend ends past the cap (the figure README's "Budgets and caps" quotes): within one
request's cost, the replicas drawing on leases of the budget (``guard``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anthropic
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import Proxy
from tests.integration.test_budgets import ALICE, _set, _wait_refreshed

CAP = Decimal("0.05")
CLIENTS = 32
REFRESH = 0.25  # the default


def _client_loop(url: str, outcomes: list[str], lock: threading.Lock) -> None:
    with anthropic.Anthropic(base_url=url, api_key="sk-ant-test-123", max_retries=0) as client:
        while True:
            try:
                client.messages.create(
                    model="claude-opus-4-8",
                    max_tokens=100,
                    messages=[{"role": "user", "content": "hi"}],
                    extra_headers=ALICE,
                )
            except anthropic.RateLimitError:
                with lock:
                    outcomes.append("refused")
                return
            with lock:
                outcomes.append("ok")


async def _recorded(url: str) -> tuple[Decimal, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT sum(cost_usd), count(*) FROM usage_events"
                        " WHERE \"user\" = 'alice' AND http_status = 200"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return Decimal(row[0] or 0), int(row[1])


@pytest.mark.postgres
async def test_two_replicas_32_clients_end_near_the_cap(
    make_proxy: Callable[..., Proxy], pg_url: str, tmp_path: Path
) -> None:
    first = make_proxy(
        database_url=pg_url, spool_dir=tmp_path / "spool-a", budget_refresh_s=REFRESH
    )
    second = make_proxy(
        database_url=pg_url, spool_dir=tmp_path / "spool-b", budget_refresh_s=REFRESH
    )
    _set(first, scope="team", name="platform", period="month", usd=str(CAP))
    _wait_refreshed(first)
    _wait_refreshed(second)
    outcomes: list[str] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=_client_loop, args=((first, second)[n % 2].url, outcomes, lock), daemon=True
        )
        for n in range(CLIENTS)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    took = time.monotonic() - began
    await asyncio.sleep(1.5)  # both recorders commit
    spent, requests = await _recorded(pg_url)
    per_request = spent / requests
    over = spent - CAP
    print(
        f"\n{CLIENTS} clients, 2 replicas, cap ${CAP}: {requests} requests forwarded in"
        f" {took:.1f} s, recorded ${spent:.6f} ({over / CAP:+.1%} of the cap,"
        f" {over / per_request:.1f} requests of ${per_request:.6f}),"
        f" {outcomes.count('refused')} clients refused"
    )
    assert outcomes.count("refused") == CLIENTS
    assert CAP - per_request <= spent <= CAP + per_request  # within one request, never more
