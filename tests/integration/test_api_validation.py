"""Each 500 schemathesis found (tests/integration/test_api_fuzz.py) as a targeted test: the API
now answers a clear 4xx naming the problem, on SQLite and PostgreSQL, and stores nothing.

Found: amounts beyond what the money columns hold (``PATCH /api/v1/tasks/0 {"human_hours":
6.5e16}``: SQLite "Python int too large", PostgreSQL "numeric field overflow"; SQLite's 64-bit
integer of 10⁻¹⁰ units is the tighter limit, $922,337,203.68); NUL bytes in query and path
values and in bodies (``GET /api/v1/reports/roi?team=%00``: PostgreSQL "invalid byte sequence
for encoding UTF8: 0x00"), CSV imports included; date-times whose UTC time falls outside years
1-9999 (``end=0001-01-01T02:03:19+08:50``: OverflowError) and windows reaching before year 1.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.tasks import TaskRecordError, task_records, update_task
from tests.conftest import Proxy


@pytest.fixture
def api(make_proxy: Callable[..., Proxy], db_url: str) -> Proxy:
    return make_proxy(database_url=db_url)


TOO_LARGE = [
    ("human_hours", 6.5e16),
    ("hourly_rate_usd", 1.709244472446078e16),
    ("value_usd", 3.782179875290868e306),
    ("value_usd", 10_000_000_000),
    ("value_usd", "922337203.6854775808"),  # one unit past what SQLite's column holds
]


def test_a_task_amount_beyond_the_column_is_refused(api: Proxy) -> None:
    for field, value in TOO_LARGE:
        response = api.http.patch("/api/v1/tasks/0", json={field: value})
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", field]
        assert "less than or equal to 922337203.6854775807" in error["msg"]
    assert api.http.get("/api/v1/tasks/0").status_code == 404  # nothing was written
    largest = "922337203.6854775807"  # the largest both databases hold, stored exactly
    response = api.http.patch("/api/v1/tasks/0", json={"value_usd": largest})
    assert response.status_code == 200, response.text
    assert response.json()["value_usd"] == largest


NUL_OR_TOO_LONG = [
    "/api/v1/reports/roi?team=%00",
    "/api/v1/reports/blended?user=a%00b",
    "/api/v1/usage?model=%00",
    "/api/v1/tasks?user=%C2%89%00%3D",
    "/api/v1/tasks/%00",
    "/api/v1/tasks?team=" + "x" * 257,
]


def test_a_nul_byte_or_an_overlong_name_in_a_query_is_refused(api: Proxy) -> None:
    for path in NUL_OR_TOO_LONG:
        response = api.http.get(path)
        assert response.status_code == 422, (path, response.text)
        (error,) = response.json()["detail"]
        assert error["type"] in {"string_pattern_mismatch", "string_too_long"}, path


def test_names_and_titles_with_control_characters_are_refused(api: Proxy) -> None:
    titled = api.http.patch("/api/v1/tasks/0", json={"title": "a\x00b"})
    assert titled.status_code == 422
    assert api.http.patch("/api/v1/tasks/0", json={"title": "\x18"}).status_code == 422
    person = {"annual_compensation": "1", "team": "co\x00re"}
    assert api.http.put("/api/v1/people/ada", json=person).status_code == 422
    assert (
        api.http.put("/api/v1/people/a%00da", json={"annual_compensation": "1"}).status_code == 422
    )
    csv = "user,team,annual_compensation,currency\nada\x00,core,1,USD\nbob,co\x01re,2,USD\n"
    imported = api.http.post(
        "/api/v1/people/import", content=csv.encode(), headers={"content-type": "text/csv"}
    )
    assert imported.status_code == 422, imported.text
    assert imported.json()["errors"] == [
        {"line": 2, "error": "user 'ada\\x00' contains the control character '\\x00'"},
        {"line": 3, "error": "team 'co\\x01re' contains the control character '\\x01'"},
    ]
    assert api.http.get("/api/v1/people", params={"history": "true"}).json()["rows"] == []


def test_any_printable_name_is_accepted_as_sent(api: Proxy) -> None:
    name = 'josé/ü "quoted" 名前'
    put = api.http.put(f"/api/v1/people/{name}", json={"annual_compensation": "1", "team": name})
    assert put.status_code == 200, put.text
    assert put.json()["user"] == name
    assert api.http.get("/api/v1/usage", params={"user": name}).status_code == 200
    assert api.http.patch(f"/api/v1/tasks/{name}", json={"title": "t"}).status_code == 200
    title = api.http.patch("/api/v1/tasks/0", json={"title": "Fix café ✓ " + "x" * 900})
    assert title.status_code == 200


OUT_OF_YEARS = [
    ("/api/v1/reports/blended?end=0001-01-01T02:03:19%2B08:50", 422),
    ("/api/v1/usage?start=9999-12-31T23:00:00-05:00", 422),
    ("/api/v1/reports/compensation?end=0001-01-05T00:00:00Z&days=30", 400),
    ("/api/v1/reports/distribution?end=0001-01-05T00:00:00Z", 400),
]


def test_a_time_outside_years_1_to_9999_is_refused(make_proxy: Callable[..., Proxy]) -> None:
    api = make_proxy()  # refused before any query: the database makes no difference
    for path, status in OUT_OF_YEARS:
        response = api.http.get(path)
        assert response.status_code == status, (path, response.text)
        assert "year" in response.text, path


async def test_the_task_record_refuses_what_its_columns_cannot_hold(engine: AsyncEngine) -> None:
    # The same rules for `tokenmeter task set`, which does not go through the API's schema.
    for changes in ({"human_hours": Decimal("6.5e16")}, {"title": "a\x00b"}):
        with pytest.raises(TaskRecordError):
            await update_task(engine, "t-1", changes)
    assert await task_records(engine, ["t-1"]) == {}
