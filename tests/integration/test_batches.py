"""Message Batches through the proxy, driven by the real anthropic SDK: create, poll, results.

The fake batch API (tests/fakes/anthropic_batches.py) answers five requests: two succeed (1,000
input and 500 output tokens each on Sonnet 4.5, $3 / $15 per MTok), one errors, one is canceled,
one expires. At the batch rate (50 %) each success costs 1,000 × 1.5 + 500 × 7.5 = $0.00525.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from sqlalchemy import create_engine, select

from proxy.cli import main
from proxy.store.tables import usage_events
from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread

MODEL = "claude-sonnet-4-5"
IDS = ("q-1", "q-2", "err-1", "cancel-1", "exp-1")
ONE_RESULT = Decimal("0.00525")


def _requests() -> list[Any]:
    return [
        {
            "custom_id": custom_id,
            "params": {
                "model": MODEL,
                "max_tokens": 100,
                "messages": [{"role": "user", "content": f"Question {custom_id}"}],
            },
        }
        for custom_id in IDS
    ]


def _creator(proxy: Proxy) -> anthropic.Anthropic:
    headers = {"x-tokenmeter-user": "ada", "x-tokenmeter-team": "core", "x-tokenmeter-task": "B-1"}
    return anthropic.Anthropic(
        base_url=proxy.url, api_key="sk-ant-test-123", max_retries=0, default_headers=headers
    )


def _result_events(proxy: Proxy, batch_id: str, expected: int) -> list[Any]:
    """The rows of ``batch_id``'s results, once the recorder wrote ``expected`` of them."""
    url = proxy.app.parts.settings.database_url.replace("+aiosqlite", "")
    engine = create_engine(url)
    prefix = f"/v1/messages/batches/{batch_id}/results/"
    query = select(usage_events).where(usage_events.c.path.startswith(prefix))
    deadline = time.monotonic() + 10
    try:
        while True:
            with engine.connect() as conn:
                rows = list(conn.execute(query).mappings())
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        engine.dispose()


def test_sdk_create_poll_results_is_metered_once_at_the_batch_rate(
    proxy: Proxy,
    claude: anthropic.Anthropic,
    upstream: tuple[FakeAnthropic, ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _creator(proxy) as creator:
        batch = creator.messages.batches.create(requests=_requests())
    assert batch.processing_status == "in_progress"
    assert batch.results_url is None

    ended = claude.messages.batches.retrieve(batch.id)  # anyone may poll: the record decides
    assert ended.processing_status == "ended"
    assert ended.results_url == f"{proxy.url}/v1/messages/batches/{batch.id}/results"

    results = list(claude.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == sorted(IDS)
    assert {r.custom_id: r.result.type for r in results}["exp-1"] == "expired"
    assert upstream[0].batches.downloads == 1  # the SDK followed the rewritten URL

    rows = _result_events(proxy, batch.id, 2)
    assert len(rows) == 2
    assert {(r["user"], r["team"], r["task"]) for r in rows} == {("ada", "core", "B-1")}
    assert {r["service_tier"] for r in rows} == {"batch"}
    assert sum(Decimal(r["cost_usd"]) for r in rows) == 2 * ONE_RESULT
    assert {r["input_tokens"] for r in rows} == {1000}

    again = list(claude.messages.batches.results(batch.id))  # a second download: nothing more
    assert len(again) == 5
    assert upstream[0].batches.downloads == 2
    time.sleep(0.5)  # the recorder flushes every 0.05 s: a second count would be written by now
    assert len(_result_events(proxy, batch.id, 2)) == 2
    labels = {"provider": "anthropic", "model": MODEL, "status": "ok", "code": "200"}
    assert proxy.metric("tokenmeter_requests_total", **labels) == 2  # not 4: metrics agree
    task = proxy.task("B-1", requests=3)  # the create exchange ($0) and the two results
    assert task["requests"] == 3
    assert Decimal(task["cost_usd"]) == 2 * ONE_RESULT

    monkeypatch.setenv("TOKENMETER_DATABASE_URL", proxy.app.parts.settings.database_url)
    assert main(["usage", "--by", "task", "--since", "1h"]) == 0
    shown = capsys.readouterr().out
    (row,) = [line.split() for line in shown.splitlines() if line.startswith("B-1 ")]
    assert (row[1], Decimal(row[4])) == ("3", 2 * ONE_RESULT)
    with capsys.disabled():
        print(f"\n$ tokenmeter usage --by task --since 1h\n{shown}")  # shown with pytest -s


def test_results_of_a_batch_the_proxy_never_saw_go_to_the_downloader(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    created = upstream[0].batches.answer(
        "POST", "/v1/messages/batches", _json_requests(), "127.0.0.1"
    )
    batch_id = json.loads(created[2])["id"]
    headers = {"x-api-key": "sk-ant-test-123", "x-tokenmeter-user": "bob"}
    retrieved = proxy.http.get(f"/v1/messages/batches/{batch_id}", headers=headers)
    assert retrieved.json()["results_url"].startswith(proxy.url)
    lines = proxy.http.get(f"/v1/messages/batches/{batch_id}/results", headers=headers)
    assert len(lines.text.splitlines()) == 5
    rows = _result_events(proxy, batch_id, 2)
    assert {r["user"] for r in rows} == {"bob"}


def _json_requests() -> bytes:
    return json.dumps({"requests": _requests()}).encode()


def test_a_path_prefix_stays_on_the_results_url_and_pays_for_the_results(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    base = f"{proxy.url}/u/carol/t/B-9"
    with anthropic.Anthropic(base_url=base, api_key="sk-ant-test-123", max_retries=0) as client:
        batch = client.messages.batches.create(requests=_requests()[:1])
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.results_url == f"{base}/v1/messages/batches/{batch.id}/results"
        page = client.messages.batches.list()
        assert [b.results_url for b in page.data if b.id == batch.id] == [ended.results_url]
        assert [r.custom_id for r in client.messages.batches.results(batch.id)] == ["q-1"]
    rows = _result_events(proxy, batch.id, 1)
    assert [(r["user"], r["task"], Decimal(r["cost_usd"])) for r in rows] == [
        ("carol", "B-9", ONE_RESULT)
    ]
