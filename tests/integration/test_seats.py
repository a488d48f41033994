"""Subscription seats end to end: the real anthropic SDK logged in with an OAuth bearer (as Claude
Code is after ``/login``) through the real proxy to the fake upstream; what is stored, reported
and counted for it next to API-key traffic.

The list price is computed here by hand from Anthropic's pricing page (Opus 4.8: $5 input,
$6.25 5-minute write, $10 1-hour write, $0.50 read, $25 output per MTok) for the fake's default
usage: 11 input, 40 + 20 cache writes, 300 read, 7 output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import pytest
import sqlalchemy as sa

from proxy.attribution import fingerprint
from proxy.store.tables import usage_events
from tests.claude_code import run_claude
from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread

OAUTH_TOKEN = "sk-ant-oat01-test-seat-token-of-alice"
OAUTH_BETA = "oauth-2025-04-20"
# 11×5 + 40×6.25 + 20×10 + 300×0.5 + 7×25 = 830 µ$
LIST_PRICE = Decimal("0.000830")


def seat_client(proxy: Proxy) -> anthropic.Anthropic:
    """The SDK as a claude.ai login drives it: an OAuth bearer and the OAuth beta flag."""
    return anthropic.Anthropic(
        base_url=proxy.url,
        auth_token=OAUTH_TOKEN,
        default_headers={"anthropic-beta": OAUTH_BETA},
        max_retries=0,
    )


@pytest.fixture
def seat(proxy: Proxy) -> Iterator[anthropic.Anthropic]:
    with seat_client(proxy) as client:
        yield client


def rows(proxy: Proxy, task: str, n: int) -> list[dict[str, Any]]:
    """The ``usage_events`` rows of ``task``, once the recorder wrote ``n`` of them."""
    proxy.task(task, n)
    url = str(proxy.app.parts.settings.database_url).replace("+aiosqlite", "")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(usage_events).where(usage_events.c.task == task)
            return [dict(row) for row in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def ask(client: anthropic.Anthropic, task: str, *, stream: bool = False) -> None:
    request: dict[str, Any] = {
        "model": "claude-opus-4-8",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hello"}],
        "extra_headers": {"x-tokenmeter-task": task, "x-tokenmeter-user": "alice"},
    }
    if stream:
        with client.messages.stream(**request) as events:
            events.until_done()
    else:
        client.messages.create(**request)


@pytest.mark.parametrize("stream", [False, True])
def test_oauth_traffic_is_a_seat_paid_zero_worth_its_list_price(
    proxy: Proxy, seat: anthropic.Anthropic, stream: bool
) -> None:
    ask(seat, "T-seat", stream=stream)
    (row,) = rows(proxy, "T-seat", 1)
    assert row["billing"] == "subscription"
    assert row["key_fingerprint"] == fingerprint(OAUTH_TOKEN, proxy.app.parts.settings.key_salt)
    assert row["cost_usd"] == 0
    assert row["sticker_usd"] == 0
    assert row["api_equivalent_usd"] == LIST_PRICE


def test_api_key_traffic_is_paid_with_no_api_equivalent(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    ask(claude, "T-key")
    (row,) = rows(proxy, "T-key", 1)
    assert row["billing"] == "api_key"
    assert row["cost_usd"] == LIST_PRICE
    assert row["api_equivalent_usd"] is None


def test_the_oauth_token_is_never_stored(
    proxy: Proxy, seat: anthropic.Anthropic, tmp_path: Path
) -> None:
    ask(seat, "T-secret")
    rows(proxy, "T-secret", 1)
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert OAUTH_TOKEN.encode() not in stored
    assert b"test-seat-token" not in stored


TOKENS = 11 + 60 + 300 + 7  # the fake's default usage, five kinds


def test_reports_show_paid_and_api_equivalent_side_by_side(
    proxy: Proxy, seat: anthropic.Anthropic, claude: anthropic.Anthropic
) -> None:
    """alice on a seat (two requests), bob on an API key (one): paid and API-equivalent dollars
    in separate columns, and blended $/MTok over bob's paid tokens only."""
    ask(seat, "T-mix")
    ask(seat, "T-mix", stream=True)
    claude.messages.create(
        model="claude-opus-4-8",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-tokenmeter-task": "T-mix", "x-tokenmeter-user": "bob"},
    )
    rows(proxy, "T-mix", 3)
    response = proxy.http.get("/api/v1/reports/blended", params={"by": "user"})
    data = response.json()
    by_user = {row["user"]: row for row in data["rows"]}
    alice, bob, total = by_user["alice"], by_user["bob"], data["total"]
    assert (alice["cost_usd"], alice["api_equivalent_usd"]) == ("0.000000", "0.001660")
    assert alice["blended_usd_per_mtok"] is None  # nothing paid per token
    assert "2 subscription (seat) requests paid $0" in alice["billing_note"]
    assert (bob["cost_usd"], bob["api_equivalent_usd"]) == ("0.000830", "0.000000")
    assert "billing_note" not in bob
    assert (total["cost_usd"], total["api_equivalent_usd"]) == ("0.000830", "0.001660")
    assert total["paid_tokens"] == TOKENS
    per_mtok = (LIST_PRICE * 1_000_000 / TOKENS).quantize(Decimal("0.000001"))
    assert total["blended_usd_per_mtok"] == str(per_mtok)
    alice_labels = {"provider": "anthropic", "model": "claude-opus-4-8", "user": "alice"}
    labels = alice_labels | {"team": ""}
    assert proxy.metric("tokenmeter_api_equivalent_cost_usd_total", **labels) == pytest.approx(
        0.00166
    )
    assert proxy.metric("tokenmeter_api_equivalent_tokens_total", **labels) == 2 * TOKENS
    assert proxy.metric("tokenmeter_cost_usd_total", **labels, kind="output") == 0
    bob_labels = labels | {"user": "bob"}
    assert proxy.metric("tokenmeter_api_equivalent_cost_usd_total", **bob_labels) == 0


def test_seats_and_the_seat_report_through_the_api(proxy: Proxy, seat: anthropic.Anthropic) -> None:
    ask(seat, "T-api")
    rows(proxy, "T-api", 1)
    put = proxy.http.put("/api/v1/seats/alice", json={"plan": "max-20x", "usd_per_month": "200"})
    assert put.status_code == 200, put.text
    assert proxy.http.get("/api/v1/seats").json()["rows"][0]["usd_per_month"] == "200"
    refused = proxy.http.put("/api/v1/seats/bob", json={"usd_per_month": "-1"})
    assert refused.status_code == 422
    imported = proxy.http.post(
        "/api/v1/seats/import",
        content="user,usd_per_month\nbob,abc\n",
        headers={"content-type": "text/csv"},
    )
    assert imported.status_code == 422
    assert imported.json()["errors"][0]["line"] == 2
    report = proxy.http.get("/api/v1/reports/seats", params={"months": 1}).json()
    (alice,) = report["rows"]
    assert (alice["user"], alice["plan"], alice["seat_usd"]) == ("alice", "max-20x", "200")
    assert alice["api_equivalent_usd"] == str(LIST_PRICE)
    assert (alice["verdict"], alice["month_to_date"]) == ("API cheaper", True)


def test_a_seats_plan_limits_are_gauges_per_seat_holder(
    proxy: Proxy, seat: anthropic.Anthropic
) -> None:
    ask(seat, "T-quota", stream=True)
    rows(proxy, "T-quota", 1)
    five_hours = {"user": "alice", "window": "5h"}
    assert proxy.metric("tokenmeter_seat_quota_utilization", **five_hours) == 0.42
    assert proxy.metric("tokenmeter_seat_quota_reset_timestamp_seconds", **five_hours) == 1.795e9
    assert proxy.metric("tokenmeter_seat_quota_utilization", user="alice", window="7d") == 0.18
    limited = json.dumps({"5h": [1.0, 1795000000, "rejected"], "7d_zz": [0.5, 1, "allowed"]})
    seat.messages.create(
        model="claude-opus-4-8",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={
            "x-tokenmeter-task": "T-quota",
            "x-tokenmeter-user": "alice",
            "x-fake-quota": limited,
        },
    )
    rows(proxy, "T-quota", 2)
    assert proxy.metric("tokenmeter_seat_quota_utilization", **five_hours) == 1.0
    assert proxy.metric("tokenmeter_seat_quota_rejected_total", **five_hours) == 1
    exposed = proxy.http.get("/metrics").text
    assert "7d_zz" not in exposed  # windows are a fixed list: a bounded label


def test_real_claude_code_with_an_oauth_token_is_a_seat(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread], tmp_path: Path
) -> None:
    """Claude Code logged in with a long-lived OAuth token (``CLAUDE_CODE_OAUTH_TOKEN``, what
    ``claude setup-token`` prints for a subscription) through the proxy to the fake."""
    fake, _ = upstream
    done = run_claude(
        "say hi",
        home=tmp_path / "home",
        base_url=proxy.url,
        CLAUDE_CODE_OAUTH_TOKEN=OAUTH_TOKEN,
        ANTHROPIC_CUSTOM_HEADERS="x-tokenmeter-user: alice\nx-tokenmeter-task: T-cc",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sent = [r for r in fake.requests if r.path == "/v1/messages"]
    assert sent
    assert sent[-1].header("authorization") == f"Bearer {OAUTH_TOKEN}"
    assert OAUTH_BETA in (sent[-1].header("anthropic-beta") or "")
    recorded = rows(proxy, "T-cc", len(sent))
    assert {row["billing"] for row in recorded} == {"subscription"}
    assert all(row["cost_usd"] == 0 and row["api_equivalent_usd"] > 0 for row in recorded)
