"""Provider reports in: ``tokenmeter reconcile import FILE.json`` and ``reconcile fetch``.

Each command runs as a user runs it (``tokenmeter …`` with ``TOKENMETER_DATABASE_URL`` set)
against a migrated SQLite file; ``fetch`` reads the fake Admin API (tests/fakes/anthropic_admin)
on a loopback port, directly or through a company egress proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from proxy import reconciliation
from proxy.cli import main
from proxy.store.engine import make_engine, upgrade
from proxy.store.tables import provider_reports
from tests.fakes.anthropic_admin import (
    ADMIN_KEY,
    COST_PATH,
    USAGE_PATH,
    FakeAdmin,
    cost_lines,
    usage_line,
)
from tests.fakes.connect_proxy import ConnectProxy, running
from tests.servers import ServerThread

SONNET = "claude-sonnet-4-5"
TOKENS = {"input": 1000, "cache_read": 20000, "cache_write_5m": 500, "output": 300}
PRICES = {k: Decimal(v) for k, v in (("input", 3), ("cache_read", "0.3"), ("output", 15))}
PRICES["cache_write_5m"] = Decimal("3.75")


def usage_page() -> dict[str, Any]:
    bucket = {
        "starting_at": "2026-11-20T00:00:00Z",
        "ending_at": "2026-11-21T00:00:00Z",
        "results": [usage_line(SONNET, TOKENS)],
    }
    return {"data": [bucket], "has_more": False, "next_page": None}


def cost_page() -> dict[str, Any]:
    bucket = {
        "starting_at": "2026-11-20T00:00:00Z",
        "ending_at": "2026-11-21T00:00:00Z",
        "results": cost_lines(SONNET, TOKENS, PRICES),
    }
    return {"data": [bucket], "has_more": False, "next_page": None}


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/reconcile.db"
    upgrade(url)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored(url: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = make_engine(url)
        try:
            query = sa.select(provider_reports).order_by(provider_reports.c.fetched_at)
            async with engine.connect() as conn:
                return [dict(row) for row in (await conn.execute(query)).mappings()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def saved(tmp_path: Path, name: str, data: Any, mtime: datetime | None = None) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def test_import_one_page_stores_it_as_saved_with_its_time(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    when = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    path = saved(tmp_path, "usage.json", usage_page(), when)
    code, out, err = run(capsys, "reconcile", "import", str(path))
    assert (code, err) == (0, "")
    assert out.startswith(f"imported {path}: 1 usage page (1 bucket, 1 line), 2026-11-20 00:00")
    (row,) = stored(database)
    assert (row["endpoint"], row["source"], row["provider"]) == ("usage", "import", "anthropic")
    assert row["fetched_at"] == when
    assert json.loads(row["body"]) == usage_page()
    assert row["starts_at"] == datetime(2026, 11, 20, tzinfo=UTC)


def test_import_a_list_of_both_reports_then_again_adds_a_newer_snapshot(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = saved(
        tmp_path, "a.json", [usage_page(), cost_page()], datetime(2026, 11, 21, tzinfo=UTC)
    )
    assert run(capsys, "reconcile", "import", str(first))[0] == 0
    revised = cost_page()
    revised["data"][0]["results"][0]["amount"] = "1.5"
    later = saved(tmp_path, "b.json", revised, datetime(2026, 11, 22, tzinfo=UTC))
    assert run(capsys, "reconcile", "import", str(later))[0] == 0
    rows = stored(database)
    assert [r["endpoint"] for r in rows] == ["usage", "cost", "cost"]
    assert rows[0]["snapshot_id"] == rows[1]["snapshot_id"] != rows[2]["snapshot_id"]
    assert json.loads(rows[1]["body"]) == cost_page()  # the older snapshot is never edited
    assert json.loads(rows[2]["body"])["data"][0]["results"][0]["amount"] == "1.5"


def _bad_usage() -> dict[str, Any]:
    page = usage_page()
    page["data"][0]["results"][0]["output_tokens"] = -5
    return page


def _number_amount() -> dict[str, Any]:
    page = cost_page()
    page["data"][0]["results"][0]["amount"] = 12.5
    return page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON: Expecting property name"),
        ('{"foo": 1}', "not a usage or cost report page (expected an object with a data list)"),
        (
            '{"object": "page", "data": [], "has_more": false}',
            "no result line tells whether this is a usage or a costs page",
        ),
        (
            json.dumps({"type": "error", "error": {"type": "x", "message": "bad key"}}),
            "an error answer, not a report: bad key",
        ),
        (
            json.dumps(
                {
                    "data": [
                        {
                            "starting_at": "2026-11-20T00:00:00Z",
                            "ending_at": "2026-11-21T00:00:00Z",
                            "results": [],
                        }
                    ]
                }
            ),
            "no result line tells whether this is a usage or a cost report page",
        ),
        (json.dumps(_bad_usage()), "data[0].results[0].output_tokens is not a count of 0 or more"),
        (
            json.dumps(_number_amount()),
            "data[0].results[0].amount is not a decimal string of cents",
        ),
        ("[]", "is an empty list: no pages to import"),
    ],
)
def test_import_refuses_what_is_not_a_report_in_one_line(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, out, err = run(capsys, "reconcile", "import", str(path))
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("tokenmeter: ")
    assert stored(database) == []


def test_import_refuses_a_file_over_the_cap_and_a_bad_page_in_a_list(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pages = saved(tmp_path, "pages.json", [usage_page(), {"data": 3}])
    code, _, err = run(capsys, "reconcile", "import", str(pages))
    assert code == 2
    assert f"{pages}[1]: not a usage or cost report page" in err
    monkeypatch.setattr(reconciliation, "MAX_PAGE_BYTES", 100)
    code, _, err = run(
        capsys, "reconcile", "import", str(saved(tmp_path, "big.json", usage_page()))
    )
    assert code == 2
    assert "is over 0 MB: split it into pages" in err
    assert stored(database) == []


# fetch -----------------------------------------------------------------------------------------


def _day(n: int) -> date:
    return (datetime.now(UTC) - timedelta(days=n)).date()


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdmin]:
    fake = FakeAdmin(page_size=2)
    for n in (1, 2):
        fake.usage[_day(n)] = [usage_line(SONNET, TOKENS)]
        fake.cost[_day(n)] = cost_lines(SONNET, TOKENS, PRICES)
    with ServerThread(fake) as server:
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_URL", server.url)
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        yield fake


def test_fetch_follows_next_page_for_both_reports_and_stores_each_page(
    database: str, admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "reconcile", "fetch", "--since", "5d")
    assert (code, err) == (0, "")
    # 6 daily buckets (5 days back, today included), 2 a page: 3 pages of each report.
    assert "fetched 3 usage pages (6 buckets, 2 lines), 3 cost pages (6 buckets, 8 lines)" in out
    rows = stored(database)
    assert [r["endpoint"] for r in rows] == ["usage"] * 3 + ["cost"] * 3
    assert len({r["snapshot_id"] for r in rows}) == 1
    assert {r["source"] for r in rows} == {"fetch"}
    paths = [path for path, _, _ in admin.requests]
    assert paths == [USAGE_PATH] * 3 + [COST_PATH] * 3
    _, query, headers = admin.requests[0]
    assert query["bucket_width"] == ["1d"]
    assert query["group_by[]"] == [
        "model",
        "api_key_id",
        "service_tier",
        "context_window",
        "inference_geo",
    ]
    assert headers["anthropic-version"] == "2023-06-01"
    assert [q.get("page") for _, q, _ in admin.requests[:3]] == [None, ["2"], ["4"]]
    assert admin.requests[3][1]["group_by[]"] == ["description"]
    assert ADMIN_KEY not in out


def test_fetch_goes_through_the_egress_proxy(
    database: str,
    admin: FakeAdmin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running(ConnectProxy()) as egress:
        monkeypatch.setenv("TOKENMETER_HTTP_PROXY", egress.url())
        code, _, err = run(capsys, "reconcile", "fetch", "--since", "1d")
    assert (code, err) == (0, "")
    assert len(egress.forwarded) == 2  # 2 daily buckets: one page of each report
    assert all(b"/v1/organizations/" in line for line in egress.forwarded)


def test_fetch_without_a_key_or_with_a_wrong_one_says_so(
    database: str,
    admin: FakeAdmin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOKENMETER_ANTHROPIC_ADMIN_KEY")
    code, _, err = run(capsys, "reconcile", "fetch")
    assert code == 2
    assert "set TOKENMETER_ANTHROPIC_ADMIN_KEY" in err
    monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-wrong")
    code, _, err = run(capsys, "reconcile", "fetch")
    assert code == 1
    assert err == (
        "tokenmeter: /v1/organizations/usage_report/messages: the Admin API answered 401"
        " (invalid x-api-key)\n"
    )
    assert stored(database) == []


def test_fetch_stops_when_has_more_comes_without_a_new_page_token(
    database: str, admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = admin.answer

    def looping(
        path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        status, body = answer(path, {k: v for k, v in query.items() if k != "page"}, headers)
        return status, {**body, "has_more": True, "next_page": "same"}

    admin.answer = looping  # type: ignore[method-assign]
    code, _, err = run(capsys, "reconcile", "fetch", "--since", "5d")
    assert code == 1
    assert err == (
        "tokenmeter: /v1/organizations/usage_report/messages: has_more without a new next_page\n"
    )
    assert stored(database) == []
    assert len(admin.requests) == 2
