"""People and compensation: all-or-nothing CSV import, the API, the gauge, admin auth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import people
from proxy.app import create_app
from proxy.config import Settings
from tests.conftest import Proxy
from tests.seed import PEOPLE_CSV

TODAY = date(2026, 11, 30)
HEADER = "user,name,team,annual_compensation,currency,effective_from\n"
MALFORMED = {
    "missing column": (
        "user,name,annual_compensation,currency\nada,Ada,1,USD\n",
        [(1, "missing column 'team'")],
    ),
    "bad number": (
        HEADER + "ada,Ada,core,200000,USD,2026-01-01\nbob,Bob,core,150k,USD,2026-01-01\n",
        [(3, "annual_compensation '150k' is not a number")],
    ),
    "unknown currency": (
        HEADER + "ada,Ada,core,200000,USS,2026-01-01\n",
        [(2, "unknown currency 'USS'")],
    ),
    "duplicate user": (
        HEADER
        + "ada,Ada,core,1,USD,2026-01-01\nbob,B,core,2,USD,\nada,Ada,core,3,USD,2026-01-01\n",
        [(4, "duplicate user 'ada' effective 2026-01-01 (first on line 2)")],
    ),
    # Each of these was a 500 from POST /api/v1/people/import (found by schemathesis).
    "a carriage return inside a field": (
        HEADER + "ada,Ada,co\rre,1,USD,2026-01-01\n",
        [
            (2, "annual_compensation '' is not a number"),
            (2, "unknown currency ''"),
            (3, "annual_compensation '2026-01-01' is not a number"),
            (3, "unknown currency ''"),
        ],
    ),
    "a field over the csv module's limit": (
        HEADER + "ada," + "A" * 200_000 + ",core,1,USD,\n",
        [(2, "not a valid CSV file: field larger than field limit")],
    ),
    "control characters and a pay too large": (
        HEADER + "a\x00da,Ada,core,1,USD,\nbob,B\x85b,core,1,USD,\ncyd,,core,1e9,USD,\n",
        [
            (2, "user 'a\\x00da' contains the control character '\\x00'"),
            (3, "name 'B\\x85b' contains the control character '\\x85'"),
            (4, "is too large (at most 922337203.6854775807)"),
        ],
    ),
    "negative pay and a bad date": (
        HEADER + "ada,Ada,core,-5,USD,2026-01-01\nbob,Bob,core,5,USD,01/02/2026\n",
        [(2, "must be a non-negative number"), (3, "effective_from '01/02/2026' is not a date")],
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
async def test_malformed_csv_names_each_line_and_writes_nothing(
    case: str, engine: AsyncEngine
) -> None:
    text, expected = MALFORMED[case]
    with pytest.raises(people.PeopleImportError) as caught:
        people.parse_csv(text, TODAY)
    errors = caught.value.errors
    assert [line for line, _ in errors] == [line for line, _ in expected]
    for (_, message), (_, fragment) in zip(errors, expected, strict=True):
        assert fragment in message
    assert "nothing imported" in str(caught.value)
    assert await people.load_people(engine) == []


async def test_import_keeps_history_and_picks_the_row_in_effect(engine: AsyncEngine) -> None:
    assert await people.save_people(engine, people.parse_csv(PEOPLE_CSV, TODAY)) == 5
    history = await people.load_people(engine)
    assert [(p.user, p.effective_from) for p in history][:2] == [
        ("ada", date(2026, 1, 1)),
        ("ada", date(2026, 12, 1)),
    ]
    assert people.in_effect(history, TODAY)["ada"].annual_compensation == Decimal(200_000)
    assert people.in_effect(history, date(2026, 12, 1))["ada"].annual_compensation == 240_000
    assert "ada" not in people.in_effect(history, date(2025, 12, 31))


def test_blank_effective_date_means_today_and_bom_is_ignored() -> None:
    rows = people.parse_csv(
        "\ufeffuser,team,annual_compensation,currency\nada,core,10.5,usd\n", TODAY
    )
    assert rows == [people.Person("ada", TODAY, None, "core", Decimal("10.5"), "USD")]


def _import(proxy: Proxy, text: str) -> httpx.Response:
    return proxy.http.post(
        "/api/v1/people/import", content=text.encode(), headers={"content-type": "text/csv"}
    )


def test_api_import_put_list_and_the_compensation_gauge(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(usd_per_currency={"EUR": Decimal("1.08")})
    bad = _import(proxy, MALFORMED["bad number"][0])
    assert bad.status_code == 422
    assert bad.json()["errors"] == [
        {
            "line": 3,
            "error": MALFORMED["bad number"][1][0][1] + " (write 120000 or 120000.50, "
            "no thousands separators or currency signs)",
        }
    ]
    assert proxy.http.get("/api/v1/people", params={"history": "true"}).json()["rows"] == []
    assert _import(proxy, PEOPLE_CSV).json() == {"imported": 5}
    put = proxy.http.put(
        "/api/v1/people/eve", json={"team": "web", "annual_compensation": "90000.50"}
    )
    assert put.status_code == 200, put.text
    assert put.json()["currency"] == "USD"
    listed = proxy.http.get("/api/v1/people", params={"at": "2026-06-01"}).json()["rows"]
    assert [p["user"] for p in listed] == [
        "ada",
        "bob",
        "cyd",
        "dee",
    ]  # eve starts today, ada's raise in December
    team_pay = "tokenmeter_team_annual_compensation_usd"
    assert proxy.metric(team_pay, team="core") == 350_000.0  # ada 200,000 + bob 150,000
    assert proxy.metric(team_pay, team="web") == 318_000.5  # cyd + dee's €100,000 + eve
    assert proxy.metric("tokenmeter_person_team_info", user="eve", team="web") == 1
    scraped = proxy.http.get("/metrics").text
    assert "tokenmeter_annual_compensation_usd" not in scraped
    assert "90000.5" not in scraped  # eve's pay
    refused = proxy.http.put("/api/v1/people/x", json={"annual_compensation": 1, "currency": "ZZZ"})
    assert refused.status_code == 422
    assert "unknown currency 'ZZZ'" in refused.text


ADMIN = "s3cret-admin-token-0123"
METRICS = "s3cret-metrics-token-4567"


def test_metrics_token_guards_metrics_and_personal_pay_is_opt_in(
    make_proxy: Callable[..., Proxy],
) -> None:
    proxy = make_proxy(metrics_token=METRICS, metrics_personal_pay=True, admin_token=ADMIN)
    admin = {"authorization": f"Bearer {ADMIN}"}
    put = proxy.http.put(
        "/api/v1/people/eve", json={"team": "web", "annual_compensation": "90000.50"}, headers=admin
    )
    assert put.status_code == 200, put.text
    for headers in ({}, admin, {"authorization": "Bearer not-the-metrics-token"}):
        refused = proxy.http.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "90000.5" not in refused.text
    scraped = proxy.http.get("/metrics", headers={"authorization": f"Bearer {METRICS}"})
    assert scraped.status_code == 200
    assert 'tokenmeter_annual_compensation_usd{team="web",user="eve"} 90000.5' in scraped.text
    assert proxy.http.get("/healthz").status_code == 200  # liveness stays open for probes


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"metrics_personal_pay": True}, "set TOKENMETER_METRICS_TOKEN too"),
        ({"metrics_token": "short"}, "at least 16 characters"),
        ({"metrics_token": "CHANGE-ME-TO-A-LONG-RANDOM-TOKEN"}, "placeholder"),
        ({"admin_token": "change-me-please-to-a-long-random-token"}, "placeholder"),
        ({"admin_token": ""}, "at least 16 characters"),
    ],
)
def test_settings_refuse_unguarded_pay_and_placeholder_tokens(
    fields: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Settings(**fields)


def test_admin_token_guards_every_api_route_but_not_proxy_traffic(
    make_proxy: Callable[..., Proxy],
) -> None:
    proxy = make_proxy(admin_token=ADMIN)
    for path in ("/api/v1/people", "/api/v1/reports/blended", "/api/v1/tasks"):
        assert proxy.http.get(path).status_code == 401
        wrong = proxy.http.get(path, headers={"authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        assert proxy.http.get(path, headers={"authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert _import(proxy, PEOPLE_CSV).status_code == 401
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": "sk-ant-test-123", "anthropic-version": "2023-06-01"}
    assert proxy.http.post("/v1/messages", json=body, headers=headers).status_code == 200


async def test_without_a_token_the_api_refuses_clients_off_loopback(tmp_path: object) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/t.db", migrate_on_start=False)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=("10.20.30.40", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tokenmeter") as client:
        response = await client.get("/api/v1/people")
    assert response.status_code == 403
    assert "TOKENMETER_ADMIN_TOKEN" in response.json()["detail"]
    await app.parts.engine.dispose()
