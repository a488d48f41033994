"""Budgets end to end: the real SDKs hit a hard cap, the counters count each event once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.budgets import Budget, make_budget, period_bounds
from proxy.store import budgets as store
from proxy.store.rows import event_to_row
from proxy.store.tables import budget_counters, budget_holds
from proxy.store.writes import write_batch
from proxy.usage import Cost
from tests import dbfixtures
from tests.conftest import Proxy
from tests.factories import make_event
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread

ALICE = {"x-tokenmeter-user": "alice", "x-tokenmeter-team": "platform"}


def _next_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def _set(proxy: Proxy, **budget: Any) -> dict[str, Any]:
    answer = proxy.http.put("/api/v1/budgets", json=budget)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _wait_refreshed(proxy: Proxy) -> None:
    """Until the proxy's guard has read the budgets just set (it refreshes every second)."""
    deadline = time.monotonic() + 5
    while not proxy.app.parts.guard.budgets():
        assert time.monotonic() < deadline, "the guard never saw the budget"
        time.sleep(0.05)


def _ask(client: anthropic.Anthropic) -> Any:
    return client.messages.create(
        model="claude-opus-4-8",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=ALICE,
    )


def test_anthropic_sdk_gets_a_billing_error_once_the_team_cap_is_spent(
    proxy: Proxy, claude: anthropic.Anthropic, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    _set(proxy, scope="team", name="platform", period="month", usd="0.000001")
    _wait_refreshed(proxy)
    _ask(claude)  # under the cap when it started: forwarded and charged
    sent = len(upstream[0].requests)

    with pytest.raises(anthropic.RateLimitError) as refused:
        _ask(claude)

    response = refused.value.response
    resets = _next_month(datetime.now(UTC))
    message = (
        "spend limit reached (team platform, monthly $0.000001; "
        f"resets {resets:%Y-%m-%d} 00:00 UTC)"
    )
    error = {"type": "billing_error", "message": message}
    assert response.content == json.dumps({"type": "error", "error": error}).encode()
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["content-type"] == "application/json"
    retry_after = int(response.headers["retry-after"])
    left = (resets - datetime.now(UTC)).total_seconds()
    assert left - 5 <= retry_after <= left + 5
    assert len(upstream[0].requests) == sent  # nothing forwarded
    assert proxy.metric("tokenmeter_requests_refused_total", reason="spend_limit") == 1


def test_count_tokens_and_models_are_never_blocked(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    _set(proxy, scope="org", period="day", usd="0.000001")
    _wait_refreshed(proxy)
    _ask(claude)
    with pytest.raises(anthropic.RateLimitError):
        _ask(claude)
    assert claude.models.list(extra_headers=ALICE).data
    counted = proxy.http.post(
        "/v1/messages/count_tokens",
        json={"model": "claude-opus-4-8", "messages": [{"role": "user", "content": "hi"}]},
        headers=ALICE,
    )
    assert counted.status_code != 429


def test_soft_budget_never_refuses_and_other_people_are_not_capped(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    _set(proxy, scope="user", name="alice", period="week", usd="0.000001", soft=True)
    _set(proxy, scope="user", name="bob", period="week", usd="0.000001")
    _wait_refreshed(proxy)
    for _ in range(3):
        _ask(claude)


def test_openai_sdk_gets_insufficient_quota_once_the_cap_is_spent(
    openai_proxy: Proxy, gpt: openai.OpenAI
) -> None:
    _set(openai_proxy, scope="user", name="alice", period="month", usd="0.000001")
    _wait_refreshed(openai_proxy)

    def ask() -> Any:
        return gpt.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=ALICE,
        )

    ask()
    with pytest.raises(openai.RateLimitError) as refused:
        ask()

    response = refused.value.response
    resets = _next_month(datetime.now(UTC))
    message = (
        f"spend limit reached (user alice, monthly $0.000001; resets {resets:%Y-%m-%d} 00:00 UTC)"
    )
    error = {
        "message": message,
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    assert response.content == json.dumps({"error": error}).encode()
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert int(response.headers["retry-after"]) > 0


def test_budgets_me_answers_for_the_caller(proxy: Proxy, claude: anthropic.Anthropic) -> None:
    _set(proxy, scope="team", name="platform", period="month", usd="2000")
    _set(proxy, scope="user", name="bob", period="day", usd="5")
    _wait_refreshed(proxy)
    _ask(claude)
    deadline = time.monotonic() + 5
    while True:
        me = proxy.http.get("/api/v1/budgets/me", headers=ALICE).json()
        if Decimal(me["tightest"]["spent_usd"]) > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (me["user"], me["team"]) == ("alice", "platform")
    assert [(b["scope"], b["name"]) for b in me["budgets"]] == [("team", "platform")]
    tightest = me["tightest"]
    assert Decimal(tightest["spent_usd"]) > 0
    assert tightest["limit_usd"] == "2000.0000000000"
    assert tightest["resets_at"] == _next_month(datetime.now(UTC)).isoformat()


def test_budget_api_refuses_nonsense(proxy: Proxy) -> None:
    answer = proxy.http.put(
        "/api/v1/budgets", json={"scope": "org", "name": "x", "period": "day", "usd": "1"}
    )
    assert answer.status_code == 422
    assert answer.json() == {"detail": "an org budget has no name"}
    assert proxy.http.delete("/api/v1/budgets/user/day?name=nobody").status_code == 404


# -- counters: same transaction as the rows, each event once ----------------------------------


def _costing(amount: str, **who: Any) -> Any:
    money = Decimal(amount)
    return make_event(cost=Cost(money, {}, money, "v"), **who)


async def _counter(engine: AsyncEngine, budget: Budget) -> Decimal:
    view = await store.load_view(engine, UTC, datetime.now(UTC))
    return sum((v for k, v in view.counted.items() if k[:3] == budget.key), Decimal(0))


async def test_counters_count_each_event_once_on_replay(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    team = make_budget("team", "platform", "month", "100")
    org = make_budget("org", None, "day", "100")
    for budget in (team, org):
        await store.save_budget(engine, budget, UTC, now)
    rows = [
        event_to_row(_costing("0.25", user="alice", team="platform", started_at=now)),
        event_to_row(_costing("0.50", user="bob", team="platform", started_at=now)),
        event_to_row(_costing("1.00", user="carol", team="sales", started_at=now)),
    ]

    assert await write_batch(engine, rows) == 3
    assert await write_batch(engine, rows[:2]) == 0  # replayed after a crash: counted nowhere

    assert await _counter(engine, team) == Decimal("0.75")
    assert await _counter(engine, org) == Decimal("1.75")


async def test_a_new_budget_starts_from_the_period_to_date_spend(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    await write_batch(engine, [event_to_row(_costing("2", user="alice", started_at=now))])
    budget = make_budget("user", "alice", "day", "10")
    await store.save_budget(engine, budget, UTC, now)
    assert await _counter(engine, budget) == Decimal("2")


class Receiver:
    """A webhook endpoint: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_webhook_once_per_threshold_across_two_replicas(
    make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    receiver = Receiver()
    with ServerThread(receiver) as hook:
        url = f"{hook.url}/budget-alerts"
        first = make_proxy(alert_webhook_url=url, spool_dir=tmp_path / "spool-a")
        second = make_proxy(alert_webhook_url=url, spool_dir=tmp_path / "spool-b")
        _set(first, scope="team", name="platform", period="week", usd="0.0008", alerts=[50, 200])
        _wait_refreshed(first)
        _wait_refreshed(second)
        with anthropic.Anthropic(base_url=first.url, api_key="k", max_retries=0) as one:
            _ask(one)  # $0.00083: past 50% (and 100%, not asked for), not 200%
        time.sleep(1)  # the second replica has read the first one's spend
        with (
            anthropic.Anthropic(base_url=second.url, api_key="k", max_retries=0) as other,
            pytest.raises(anthropic.RateLimitError),
        ):
            _ask(other)  # hard at 100%: refused, nothing more spent
        time.sleep(2)  # both replicas refresh several times
    assert [(b["name"], b["threshold"], b["period"]) for b in receiver.bodies] == [
        ("platform", 50, "week")
    ]
    assert Decimal(receiver.bodies[0]["spent_usd"]) > Decimal("0.0004")


async def _reserved_and_holds(engine: AsyncEngine) -> tuple[Decimal, dict[str, Decimal]]:
    async with engine.connect() as conn:
        reserved = (await conn.execute(sa.select(budget_counters.c.reserved_usd))).scalars()
        holds = (await conn.execute(sa.select(budget_holds))).mappings().all()
    return sum(reserved, Decimal(0)), {h["holder"]: Decimal(h["amount_usd"]) for h in holds}


async def test_leases_reserve_commit_release_and_a_crashed_replicas_are_swept(
    engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    budget = make_budget("team", "platform", "month", "1")
    await store.save_budget(engine, budget, UTC, now)
    key = (*budget.key, period_bounds(budget.period, now, UTC)[0])
    a, b = store.Leases(engine, "replica-a"), store.Leases(engine, "replica-b")

    assert await a.take(key, budget.amount_usd, Decimal("0.6"), Decimal("0.1")) == (
        Decimal("0.6"),
        Decimal(0),
    )
    # 0.6 + 0.6 > 1: not the chunk; room is left, so what one request needs.
    granted, _ = await b.take(key, budget.amount_usd, Decimal("0.6"), Decimal("0.3"))
    assert granted == Decimal("0.3")
    # 0.9 reserved, 0.1 of room: the last room goes to one request, past the cap...
    granted, _ = await b.take(key, budget.amount_usd, Decimal("0.6"), Decimal("0.3"))
    assert granted == Decimal("0.3")
    # ... and none after it.
    granted, _ = await a.take(key, budget.amount_usd, Decimal("0.6"), Decimal("0.1"))
    assert granted == 0
    assert await _reserved_and_holds(engine) == (
        Decimal("1.2"),
        {"replica-a": Decimal("0.6"), "replica-b": Decimal("0.6")},
    )

    # replica-a's rows commit: their cost moves from its lease to spent_usd.
    tally = store.Tally(UTC, "replica-a")
    rows = [event_to_row(_costing("0.25", user="alice", team="platform", started_at=now))]
    assert await write_batch(engine, rows, tally) == 1
    assert tally.released == {key: Decimal("0.25")}
    assert tally.counters == {key: Decimal("0.25")}
    await a.give_back(key, Decimal("5"))  # at most what the lease holds
    assert await _reserved_and_holds(engine) == (Decimal("0.6"), {"replica-b": Decimal("0.6")})

    # replica-b stops renewing (it crashed): a sweep from any replica returns its lease once.
    assert await a.sweep(now + store.LEASE_TTL + timedelta(seconds=1)) == 1
    assert await b.sweep(now + store.LEASE_TTL + timedelta(seconds=1)) == 0
    assert await _reserved_and_holds(engine) == (Decimal(0), {})


async def _allow_connections(url: str, allow: bool) -> None:
    admin = await dbfixtures._admin_connection()
    try:
        database = sa.engine.make_url(url).database
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {allow}')
    finally:
        await admin.close()
    if not allow:
        await dbfixtures.terminate_backends(url)


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.mark.postgres
async def test_with_the_store_away_budgets_fail_open_or_closed_as_configured(
    make_proxy: Callable[..., Proxy], pg_url: str, tmp_path: Path
) -> None:
    fast = {"database_url": pg_url, "budget_refresh_s": 0.1, "budget_stale_s": 0.5}
    open_ = make_proxy(spool_dir=tmp_path / "a", **fast)
    closed = make_proxy(spool_dir=tmp_path / "b", budget_fail_closed=True, **fast)
    _set(open_, scope="team", name="platform", period="month", usd="1000")
    for proxy in (open_, closed):
        _wait_refreshed(proxy)
    with (
        anthropic.Anthropic(base_url=open_.url, api_key="sk-ant-test", max_retries=0) as a,
        anthropic.Anthropic(base_url=closed.url, api_key="sk-ant-test", max_retries=0) as b,
    ):
        _ask(a)
        _ask(b)
        await _allow_connections(pg_url, False)
        try:
            said: list[str] = []

            def refused() -> bool:
                try:
                    _ask(b)
                except anthropic.RateLimitError as exc:
                    said.append(str(exc))
                    return True
                return False

            await _until(refused, "fail-closed never refused with the store away")
            assert "the budget store is unavailable" in said[0]
            before = open_.metric("tokenmeter_budget_unenforced_total")
            _ask(a)  # fail-open: answered, and counted as unenforced
            assert open_.metric("tokenmeter_budget_unenforced_total") == before + 1
        finally:
            await _allow_connections(pg_url, True)

        def admitted() -> bool:
            try:
                _ask(b)
            except anthropic.RateLimitError:
                return False
            return True

        await _until(admitted, "fail-closed never admitted again once the store was back")
