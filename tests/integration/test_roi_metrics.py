"""ROI on /metrics: task value and valued-task cost per team, read from the database, so every
replica shows the same totals (a value counted once, whichever replica took it) and they equal
``GET /api/v1/reports/roi``."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import anthropic

from tests.conftest import Proxy


def _ask(proxy: Proxy, task: str, team: str) -> None:
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-t", max_retries=0) as claude:
        claude.messages.create(
            model="claude-opus-4-8",
            max_tokens=9,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-tokenmeter-task": task, "x-tokenmeter-team": team},
        )


def _scraped(proxy: Proxy, name: str, team: str) -> float:
    assert proxy.http.get("/metrics").status_code == 200  # reloads the ROI rows when due
    return proxy.metric(name, team=team)


def test_replicas_agree_on_task_value_and_it_matches_the_api(
    make_proxy: Callable[..., Proxy],
) -> None:
    one = make_proxy()
    other = make_proxy()  # a second replica on the same database
    _ask(one, "T-1", "web")
    _ask(one, "T-1", "data")
    _ask(other, "T-2", "web")
    _ask(other, "T-3", "web")  # no value: not counted
    one.task("T-1", 2)
    other.task("T-3", 1)
    assert _scraped(one, "tokenmeter_task_value_usd_total", "web") == 0  # loaded before values
    for proxy in (one, other):
        proxy.app.parts.metrics.roi.expire()  # instead of waiting for the rows to age
    assert one.http.patch("/api/v1/tasks/T-1", json={"value_usd": "300"}).status_code == 200
    assert other.http.patch("/api/v1/tasks/T-2", json={"value_usd": "50"}).status_code == 200
    value = {
        team: _scraped(one, "tokenmeter_task_value_usd_total", team) for team in ("web", "data")
    }
    assert value == {
        team: _scraped(other, "tokenmeter_task_value_usd_total", team) for team in ("web", "data")
    }
    assert value["web"] + value["data"] == 350  # each value once, split over T-1's two teams
    cost = {t: _scraped(one, "tokenmeter_valued_task_cost_usd_total", t) for t in ("web", "data")}
    roi = one.http.get("/api/v1/reports/roi").json()["total"]
    assert Decimal(str(sum(cost.values()))) == Decimal(roi["task_cost_usd"])
    assert round(sum(value.values()) / sum(cost.values()), 2) == float(roi["roi"])
