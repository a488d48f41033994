"""The reports through the real proxy's REST API, on SQLite and PostgreSQL, against seed figures.

Every expected figure is computed by hand from tests/seed.py (30-day window, ×365/30 a year).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from proxy.store.engine import make_engine
from tests.conftest import Proxy
from tests.seed import END, EUR_RATE, seed

WINDOW = {"days": "30", "end": END.isoformat()}


@pytest.fixture
async def seeded(make_proxy: Callable[..., Proxy], db_url: str) -> Proxy:
    proxy = make_proxy(database_url=db_url, usd_per_currency=EUR_RATE)
    engine = make_engine(db_url)
    try:
        await seed(engine)
    finally:
        await engine.dispose()
    return proxy


def _get(proxy: Proxy, path: str, **params: Any) -> Any:
    response = proxy.http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_compensation_per_person_team_and_org(seeded: Proxy) -> None:
    data = _get(seeded, "/api/v1/reports/compensation", **WINDOW)
    person = {p["user"]: p for p in data["people"]}
    assert person["ada"]["annual_compensation"] == "200000"  # the December raise is not yet
    assert person["ada"]["spend_usd"] == "3000.000000"
    assert person["ada"]["annualized_spend_usd"] == "36500.00"
    assert person["ada"]["spend_to_compensation"] == "0.1825"
    assert person["ada"]["tokens_per_person_per_month"] == 3_041_667  # 3M × 365/360
    assert person["bob"]["spend_to_compensation"] == "0.0487"  # 7300 / 150000
    assert person["dee"]["currency"] == "EUR"
    assert person["dee"]["annual_compensation_usd"] == "108000.00"
    assert person["zed"]["team"] == "(no people record)"
    assert person["zed"]["spend_to_compensation"] is None
    team = {t["team"]: t for t in data["teams"]}
    assert team["core"]["annual_compensation_usd"] == "350000.00"
    assert team["core"]["annualized_spend_usd"] == "43800.00"
    assert team["core"]["spend_to_compensation"] == "0.1251"  # 43800 / 350000
    assert team["web"]["spend_to_compensation"] == "0.0160"  # 3650 / 228000
    assert team["web"]["tokens_per_person_per_month"] == 101_389  # 200k / 2 × 365/360
    org = data["org"]
    assert org["spend_usd"] == "4100.000000"
    assert org["annualized_spend_usd"] == "49883.33"
    assert org["uncovered_spend_usd"] == "200.000000"  # zed + traffic without a user
    assert org["spend_to_compensation"] == "0.0821"  # 3900 × 365/30 / 578000
    assert org["headcount"] == 5


def test_compensation_refuses_a_currency_without_a_rate(
    make_proxy: Callable[..., Proxy], seeded: Proxy
) -> None:
    plain = make_proxy(database_url=str(seeded.app.parts.settings.database_url))
    response = plain.http.get("/api/v1/reports/compensation", params=WINDOW)
    assert response.status_code == 400
    assert "EUR (dee)" in response.json()["detail"]
    assert "TOKENMETER_USD_PER_CURRENCY" in response.json()["detail"]


def test_distribution_of_tokens_across_people(seeded: Proxy) -> None:
    data = _get(seeded, "/api/v1/reports/distribution", **WINDOW)
    assert data["people"] == 5  # dee counts with 0; traffic without a user does not
    assert data["total"] == "3800000"
    assert data["percentiles"] == {
        "p50": "200000",
        "p75": "500000",
        "p90": "2000000",
        "p95": "2500000",
        "p99": "2900000",
    }
    assert data["top_share"] == {"top1": "0.7895", "top5": "1.0000", "top10": "1.0000"}
    assert data["gini"] == "0.6737"


def test_blended_by_user_shows_sticker_and_savings(seeded: Proxy) -> None:
    data = _get(seeded, "/api/v1/reports/blended", by="user", start="2026-10-31T00:00:00Z")
    ada = next(row for row in data["rows"] if row["user"] == "ada")
    assert ada["cost_usd"] == "3000.000000"
    assert ada["sticker_usd"] == "12000.000000"  # seeded at 4× cost
    assert ada["cache_savings_usd"] == "9000.000000"
    assert ada["cache_discount"] == "0.7500"
    assert ada["blended_usd_per_mtok"] == "1000.000000"
    assert data["total"]["cost_usd"] == "4100.000000"


def test_blended_as_csv_for_spreadsheets(seeded: Proxy) -> None:
    response = seeded.http.get(
        "/api/v1/reports/blended",
        params={"by": "team", "start": "2026-10-31T00:00:00Z"},
        headers={"accept": "text/csv"},
    )
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["team"] for row in rows] == ["ignored", "(total)"]
    assert rows[-1]["cost_usd"] == "4100.000000"
    assert rows[-1]["tokens.cache_read"] == str(94 * 3_850_000 // 100)
    by_format = seeded.http.get("/api/v1/reports/compensation", params={**WINDOW, "format": "csv"})
    levels = [row["level"] for row in csv.DictReader(io.StringIO(by_format.text))]
    assert levels == ["person"] * 5 + ["team"] * 3 + ["org"]


def test_tasks_roi_after_setting_hours_and_rate(seeded: Proxy) -> None:
    patched = seeded.http.patch(
        "/api/v1/tasks/T-1", json={"title": "Fix login", "human_hours": 16, "hourly_rate_usd": 150}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["roi"] == "1.20"  # 16 h × $150 = $2400 of work for $2000 of tokens
    seeded.http.patch("/api/v1/tasks/T-3", json={"value_usd": "3000"})
    task = _get(seeded, "/api/v1/tasks/T-1")
    assert (task["title"], task["value_usd"], task["value_basis"]) == (
        "Fix login",
        "2400",
        "human_hours x hourly_rate_usd",
    )
    listed = _get(seeded, "/api/v1/tasks", sort="roi", start="2026-10-31T00:00:00Z")
    assert [(t["task_id"], t["roi"]) for t in listed["rows"]] == [
        ("T-3", "10.00"),
        ("T-1", "1.20"),
        ("T-2", None),
    ]
    roi = _get(seeded, "/api/v1/reports/roi")
    assert roi["total"] == {
        "tasks": 2,
        "cost_usd": "2300.000000",
        "task_cost_usd": "2300.000000",  # no window: the window is the whole task
        "cost_complete": True,
        "value_usd": "5400",
        "roi": "2.35",
    }


def test_patch_refuses_unknown_fields_and_negative_hours(seeded: Proxy) -> None:
    assert seeded.http.patch("/api/v1/tasks/T-1", json={"hours": 3}).status_code == 422
    assert seeded.http.patch("/api/v1/tasks/T-1", json={"human_hours": -1}).status_code == 422
    assert _get(seeded, "/api/v1/tasks/T-1")["human_hours"] is None


def test_task_view_keeps_its_cost_fields(seeded: Proxy) -> None:
    task = _get(seeded, "/api/v1/tasks/T-2")
    assert task["users"] == ["ada", "bob"]
    assert Decimal(task["cost_usd"]) == Decimal(1600)
    assert task["roi"] is None
    assert seeded.http.get("/api/v1/tasks/nope").status_code == 404
