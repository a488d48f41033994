"""Reconciliation with OpenAI's organization usage and costs API.

``tokenmeter reconcile fetch`` with ``TOKENMETER_OPENAI_ADMIN_KEY`` reads the fake OpenAI Admin
API (tests/fakes/openai_admin: real shapes, opaque page cursors, dollars as JSON numbers) on a
loopback port; ``reconcile import`` takes the same pages saved by hand. Then the report on
seeded traffic: three days of GPT-4.1 and GPT-4.1 mini (tests/factories events, priced by the real
pricing engine as the meter prices them); the fake serves the same tokens, counted as OpenAI
counts them (``input_tokens`` includes the cached ones), at list prices (GPT-4.1 $2 / $0.50
cached / $8, mini $0.40 / $0.10 / $1.60 per MTok):
- as recorded, every OpenAI row is ``match``;
- the provider revises one day with 12,345 more input tokens: that row is ``proxy_low`` by
  exactly 12,345 tokens and $0.02469, the others still match;
- a price file that misprices GPT-4.1 mini (twice the list price): its rows are ``proxy_high`` in
  dollars, tokens matching, and say the override priced them.
And the real openai SDK through the proxy, with cached tokens, matches the provider's count.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa

from proxy.cli import main
from proxy.pricing import Pricer, load_overrides
from proxy.store.engine import make_engine, upgrade
from proxy.store.rows import event_to_row
from proxy.store.tables import provider_reports
from proxy.store.writes import write_batch
from proxy.usage import Usage, UsageEvent
from tests.conftest import Proxy
from tests.factories import make_event
from tests.fakes.anthropic_admin import ADMIN_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_admin import FakeAdmin, cost_lines, usage_line
from tests.fakes.openai_admin import (
    ADMIN_KEY,
    COST_PATH,
    EMBEDDINGS_PATH,
    USAGE_PATH,
    FakeOpenAIAdmin,
    cost_result,
    cost_results,
    embeddings_result,
    page_json,
    usage_result,
)
from tests.servers import ServerThread

GPT, MINI = "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14"
SONNET = "claude-sonnet-4-6"
LIST = {
    GPT: {"input": "2", "cache_read": "0.5", "output": "8"},
    MINI: {"input": "0.4", "cache_read": "0.1", "output": "1.6"},
    SONNET: {"input": "3", "cache_read": "0.3", "output": "15"},
}
PRICES = {m: {k: Decimal(v) for k, v in p.items()} for m, p in LIST.items()}
TURN = Usage(input=1200, cache_read=40000, output=800)
TURNS = 3
EXTRA = 12_345
MISPRICED = """
[[model]]
provider = "openai"
name = "gpt-4.1-mini-2025-04-14"
input = "0.8"
cache_read = "0.2"
output = "3.2"
effective_from = 2025-01-01
source = "a typo in the price sheet"
"""


def days() -> list[date]:
    today = datetime.now(UTC).date()
    return [today - timedelta(days=n) for n in (3, 2, 1)]


def tokens(turns: int = TURNS) -> dict[str, int]:
    return {kind: count * turns for kind, count in TURN.by_kind().items()}


def events(pricer: Pricer, models: dict[str, str]) -> list[UsageEvent]:
    made = []
    for day in days():
        for model, provider in models.items():
            for n in range(TURNS):
                at = datetime(day.year, day.month, day.day, 10, n, tzinfo=UTC)
                event = make_event(
                    started_at=at, provider=provider, model=model, usage=TURN, priced=False
                )
                made.append(event.with_cost(pricer.price(event)))
    return made


def record(url: str, prices_file: Path | None = None, *, with_claude: bool = False) -> None:
    models = {GPT: "openai", MINI: "openai", **({SONNET: "anthropic"} if with_claude else {})}
    pricer = Pricer(load_overrides(prices_file) if prices_file else None)

    async def write() -> None:
        engine = make_engine(url)
        try:
            await write_batch(engine, [event_to_row(e) for e in events(pricer, models)])
        finally:
            await engine.dispose()

    asyncio.run(write())


def bill(fake: FakeOpenAIAdmin) -> None:
    """OpenAI's reports for the recorded traffic, as OpenAI would count and price it."""
    for day in days():
        fake.usage[day] = [usage_result(m, tokens(), api_key_id=f"key_{m}") for m in (GPT, MINI)]
        fake.cost[day] = [
            line for m in (GPT, MINI) for line in cost_results(m, tokens(), PRICES[m])
        ]
    fake.cost[days()[0]].append(cost_result("web search tool calls", Decimal("0.025")))


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/reconcile.db"
    upgrade(url)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    return url


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIAdmin]:
    fake = FakeOpenAIAdmin(page_size=2)
    bill(fake)
    with ServerThread(fake) as server:
        monkeypatch.setenv("TOKENMETER_OPENAI_ADMIN_URL", server.url)
        monkeypatch.setenv("TOKENMETER_OPENAI_ADMIN_KEY", ADMIN_KEY)
        monkeypatch.delenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", raising=False)
        yield fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tokenmeter(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, ""), err
    return out


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    tokenmeter(capsys, "reconcile", "fetch", "--since", "5d")
    data: dict[str, Any] = json.loads(tokenmeter(capsys, "report", "reconcile", "--json", *argv))
    return data


def rows_by_key(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["day"], row["model"]): row for row in data["rows"]}


def stored(url: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = make_engine(url)
        try:
            query = sa.select(provider_reports).order_by(
                provider_reports.c.fetched_at, provider_reports.c.page_id
            )
            async with engine.connect() as conn:
                return [dict(row) for row in (await conn.execute(query)).mappings()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


# in: fetch and import ------------------------------------------------------------------------


def test_fetch_follows_next_page_for_usage_and_costs_and_stores_each_page(
    database: str, admin: FakeOpenAIAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "reconcile", "fetch", "--since", "5d")
    assert (code, err) == (0, "")
    # 6 daily buckets (5 days back, today included), 2 a page: 3 pages of each report.
    assert out.startswith(
        "fetched 3 usage pages (6 buckets, 6 lines), 3 embeddings usage pages (6 buckets, 0 lines),"
        " 3 cost pages (6 buckets, 19 lines), "
    )
    assert "; openai snapshot " in out
    assert out.count("\n") == 1
    rows = stored(database)
    assert [r["endpoint"] for r in rows] == ["usage"] * 3 + ["usage_embeddings"] * 3 + ["cost"] * 3
    assert {r["provider"] for r in rows} == {"openai"}
    assert len({r["snapshot_id"] for r in rows}) == 1
    paths = [path for path, _, _ in admin.requests]
    assert paths == [USAGE_PATH] * 3 + [EMBEDDINGS_PATH] * 3 + [COST_PATH] * 3
    _, query, headers = admin.requests[0]
    start = datetime.fromtimestamp(int(query["start_time"][0]), UTC)
    end = datetime.fromtimestamp(int(query["end_time"][0]), UTC)
    assert (start.time().isoformat(), (end - start).days) == ("00:00:00", 6)
    assert query["bucket_width"] == ["1d"]
    assert query["group_by"] == ["model", "api_key_id", "project_id"]
    assert headers["authorization"] == f"Bearer {ADMIN_KEY}"
    assert "x-api-key" not in headers
    cursors = [q.get("page") for _, q, _ in admin.requests[:3]]
    assert cursors[0] is None
    assert cursors[1] != cursors[2]
    assert admin.requests[3][1]["group_by"] == ["model", "api_key_id", "project_id"]
    assert admin.requests[6][1]["group_by"] == ["line_item"]
    assert ADMIN_KEY not in out
    # Stored as received: the dollars keep their digits (JSON numbers, never a float here).
    assert any('"value": 0.0192,' in r["body"] for r in rows if r["endpoint"] == "cost")


def test_fetch_with_a_wrong_key_says_what_openai_answered(
    database: str,
    admin: FakeOpenAIAdmin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENMETER_OPENAI_ADMIN_KEY", "sk-admin-wrong")
    code, _, err = run(capsys, "reconcile", "fetch", "--provider", "openai")
    assert code == 1
    assert err == (
        "tokenmeter: /v1/organization/usage/completions: the Admin API answered 401"
        " (Incorrect API key provided.)\n"
    )
    monkeypatch.delenv("TOKENMETER_OPENAI_ADMIN_KEY")
    code, _, err = run(capsys, "reconcile", "fetch", "--provider", "openai")
    assert code == 2
    assert "set TOKENMETER_OPENAI_ADMIN_KEY (an admin key)" in err
    assert stored(database) == []


def _saved_pages(admin: FakeOpenAIAdmin) -> str:
    """What a person saves from the usage and costs endpoints for the first day: a list."""
    day = days()[0]
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())

    def page(results: list[dict[str, Any]]) -> dict[str, Any]:
        bucket = {"object": "bucket", "start_time": start, "end_time": start + 86400}
        return {
            "object": "page",
            "data": [{**bucket, "results": results}],
            "has_more": False,
            "next_page": None,
        }

    return page_json([page(admin.usage[day]), page(admin.cost[day])])


def test_import_saved_openai_pages_then_the_report_reads_them(
    database: str,
    admin: FakeOpenAIAdmin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record(database)
    path = tmp_path / "openai.json"
    path.write_text(_saved_pages(admin))
    out = tokenmeter(capsys, "reconcile", "import", str(path))
    assert out.startswith(f"imported {path}: 1 usage page (1 bucket, 2 lines), 1 cost page")
    assert "; openai snapshot " in out
    rows = stored(database)
    assert [(r["provider"], r["endpoint"], r["source"]) for r in rows] == [
        ("openai", "usage", "import"),
        ("openai", "cost", "import"),
    ]
    assert rows[1]["body"] in path.read_text()  # each page's own text, as saved
    data = json.loads(tokenmeter(capsys, "report", "reconcile", "--since", "5d", "--json"))
    first = [row for row in data["rows"] if row["day"] == days()[0].isoformat()]
    assert [(r["vendor"], r["model"], r["verdict"]) for r in first] == [
        ("openai", GPT, "match"),
        ("openai", MINI, "match"),
    ]
    assert data["other_costs"]["provider_usd"] == {"web search tool calls": "0.025000"}


def _moderations_page() -> dict[str, Any]:
    result = {"object": "organization.usage.moderations.result", "input_tokens": 5}
    bucket = {"object": "bucket", "start_time": 0, "end_time": 86400, "results": [result]}
    return {"object": "page", "data": [bucket], "has_more": False, "next_page": None}


def _cached_over_input() -> dict[str, Any]:
    page = _moderations_page()
    page["data"][0]["results"] = [usage_result(GPT, tokens())]
    page["data"][0]["results"][0]["input_cached_tokens"] = 10**9
    return page


def _string_amount() -> dict[str, Any]:
    page = _moderations_page()
    page["data"][0]["results"] = [cost_result("gpt-4.1, input", Decimal(1))]
    page["data"][0]["results"][0]["amount"]["value"] = "1.0"
    return page


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (_moderations_page(), "an OpenAI moderations usage page: only completions and embed"),
        (_cached_over_input(), "data[0].results[0]: cached and cache-write tokens exceed"),
        (_string_amount(), "data[0].results[0].amount.value is not a number (got '1.0')"),
    ],
)
def test_import_refuses_an_openai_page_it_cannot_reconcile_in_one_line(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    page: dict[str, Any],
    message: str,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(page))
    code, out, err = run(capsys, "reconcile", "import", str(path))
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1
    assert stored(database) == []


# the report ----------------------------------------------------------------------------------


def test_recorded_openai_traffic_matches_the_bill_everywhere(
    database: str, admin: FakeOpenAIAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database)
    data = report(capsys)
    assert data["verdicts"] == {"match": 6, "proxy_low": 0, "proxy_high": 0}
    assert data["coverage"] == "1.0000"
    gpt = rows_by_key(data)[(days()[0].isoformat(), GPT)]
    assert gpt["vendor"] == "openai"
    # OpenAI's input_tokens 123,600 = 3,600 uncached + 120,000 cached: the same kinds both sides.
    assert gpt["proxy"]["tokens"] == gpt["provider"]["tokens"] == tokens()
    assert admin.usage[days()[0]][0]["input_tokens"] == 123_600
    # 3 turns: 3,600 in × $2, 120,000 cached × $0.50, 2,400 out × $8
    assert gpt["proxy"]["usd"] == gpt["provider"]["usd"] == "0.086400"
    assert (gpt["token_diff"], gpt["usd_diff"]) == (0, "0.000000")
    assert data["other_costs"]["provider_usd"] == {"web search tool calls": "0.025000"}
    assert data["snapshots"]["anthropic"] == {"usage": None, "cost": None}


def test_a_day_with_extra_openai_tokens_is_proxy_low_by_exactly_those(
    database: str, admin: FakeOpenAIAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database)
    assert report(capsys)["verdicts"]["match"] == 6
    revised = days()[1]
    admin.usage[revised][0]["input_tokens"] += EXTRA  # GPT-4.1's line: a later revision
    admin.cost[revised] += cost_results(GPT, {"input": EXTRA}, PRICES[GPT])
    data = report(capsys)
    assert data["verdicts"] == {"match": 5, "proxy_low": 1, "proxy_high": 0}
    low = rows_by_key(data)[(revised.isoformat(), GPT)]
    assert low["verdict"] == "proxy_low"
    assert low["token_diff"] == -EXTRA
    assert low["provider"]["tokens"]["input"] - low["proxy"]["tokens"]["input"] == EXTRA
    assert low["provider"]["tokens"]["cache_read"] == low["proxy"]["tokens"]["cache_read"]
    assert low["usd_diff"] == "-0.024690"  # 12,345 × $2/MTok
    assert low["token_diff_pct"] == "-8.92"  # of the provider's 138,345
    assert data["coverage"] == "0.9839"  # 756,000 of 768,345


def test_a_mispriced_openai_model_is_proxy_high_in_dollars(
    database: str,
    admin: FakeOpenAIAdmin,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(MISPRICED)
    record(database, prices)
    monkeypatch.setenv("TOKENMETER_PRICES_FILE", str(prices))
    data = report(capsys)
    assert data["verdicts"] == {"match": 3, "proxy_low": 0, "proxy_high": 3}
    for (_, model), row in rows_by_key(data).items():
        if model == MINI:
            assert row["verdict"] == "proxy_high"
            assert row["token_diff"] == 0
            assert row["usd_diff"] == row["provider"]["usd"]  # twice the list price
            assert row["usd_diff_pct"] == "100.00"
            assert "proxy dollars at the company's price override or discount" in row["notes"]
        else:
            assert (row["verdict"], row["notes"]) == ("match", [])


def test_both_providers_in_one_report_and_one_at_a_time(
    database: str,
    admin: FakeOpenAIAdmin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record(database, with_claude=True)
    claude = FakeAdmin(page_size=3)
    for day in days():
        claude.usage[day] = [usage_line(SONNET, tokens())]
        claude.cost[day] = cost_lines(SONNET, tokens(), PRICES[SONNET])
    with ServerThread(claude) as server:
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_URL", server.url)
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
        fetched = tokenmeter(capsys, "reconcile", "fetch", "--since", "5d")
    assert [line.split("; ")[-1].split()[0] for line in fetched.splitlines()] == [
        "anthropic",
        "openai",
    ]
    data = json.loads(tokenmeter(capsys, "report", "reconcile", "--since", "5d", "--json"))
    assert data["verdicts"] == {"match": 9, "proxy_low": 0, "proxy_high": 0}
    assert {row["vendor"] for row in data["rows"]} == {"anthropic", "openai"}
    assert data["providers"] == ["anthropic", "openai"]
    only = json.loads(
        tokenmeter(capsys, "report", "reconcile", "--since", "5d", "--provider", "openai", "--json")
    )
    assert {row["vendor"] for row in only["rows"]} == {"openai"}
    assert only["total"]["proxy"]["total_tokens"] == 6 * sum(tokens().values())
    table = tokenmeter(capsys, "report", "reconcile", "--since", "5d")
    assert "verdicts: 9 match, 0 proxy_low, 0 proxy_high" in table
    print(table)  # the README's example


def test_traffic_through_the_real_openai_sdk_matches_openais_count(
    openai_proxy: Proxy,
    gpt: openai.OpenAI,
    admin: FakeOpenAIAdmin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = {
        "prompt_tokens": 41_200,
        "completion_tokens": 800,
        "total_tokens": 42_000,
        "prompt_tokens_details": {"cached_tokens": 40_000, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    headers = {"x-tokenmeter-task": "O-1", "x-fake-usage": json.dumps(usage)}
    for stream in (False, True, False):
        answer = gpt.chat.completions.create(
            model=GPT,
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            extra_headers=headers,
        )
        if isinstance(answer, openai.Stream):
            for _ in answer:  # read to the end, as a client does
                pass
    openai_proxy.task("O-1", 3)
    today = datetime.now(UTC).date()
    admin.usage, admin.cost = {}, {}  # OpenAI saw exactly these three requests today
    admin.usage[today] = [usage_result(GPT, tokens())]
    admin.cost[today] = cost_results(GPT, tokens(), PRICES[GPT])
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/tokenmeter.db")
    tokenmeter(capsys, "reconcile", "fetch", "--since", "1d")
    data = json.loads(tokenmeter(capsys, "report", "reconcile", "--since", "1d", "--json"))
    (row,) = data["rows"]
    assert (row["vendor"], row["model"], row["verdict"]) == ("openai", GPT, "match")
    assert row["proxy"]["tokens"] == tokens()
    assert row["proxy"]["usd"] == row["provider"]["usd"] == "0.086400"


def test_saved_file_time_is_the_snapshot_time(
    database: str, admin: FakeOpenAIAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "openai.json"
    path.write_text(_saved_pages(admin))
    saved = datetime(2026, 11, 1, tzinfo=UTC)
    os.utime(path, (saved.timestamp(), saved.timestamp()))
    tokenmeter(capsys, "reconcile", "import", str(path))
    assert {r["fetched_at"] for r in stored(database)} == {saved}


def test_the_rest_api_answers_openai_rows_one_provider_at_a_time_and_as_csv(
    make_proxy: Callable[..., Proxy],
    admin: FakeOpenAIAdmin,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = db_url  # SQLite and PostgreSQL: the day buckets and the provider group are SQL
    proxy = make_proxy(database_url=url)
    record(url, with_claude=True)  # Claude traffic with no Anthropic report stored
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    tokenmeter(capsys, "reconcile", "fetch", "--since", "5d")
    both = proxy.http.get("/api/v1/reports/reconcile", params={"days": 5})
    assert both.status_code == 200, both.text
    assert both.json()["verdicts"] == {"match": 6, "proxy_low": 0, "proxy_high": 3}
    answer = proxy.http.get("/api/v1/reports/reconcile", params={"days": 5, "provider": "openai"})
    assert answer.json()["verdicts"] == {"match": 6, "proxy_low": 0, "proxy_high": 0}
    assert answer.json()["providers"] == ["openai"]
    sheet = proxy.http.get(
        "/api/v1/reports/reconcile", params={"days": 5, "provider": "openai", "format": "csv"}
    )
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [(row["vendor"], row["verdict"]) for row in rows] == [("openai", "match")] * 6 + [
        ("", "match")
    ]
    assert rows[0]["provider.tokens.cache_read"] == "120000"
    wrong = proxy.http.get("/api/v1/reports/reconcile", params={"provider": "gemini"})
    assert wrong.status_code == 422


def test_when_one_provider_fails_the_other_providers_snapshot_is_kept(
    database: str,
    admin: FakeOpenAIAdmin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claude = FakeAdmin(page_size=7)
    claude.usage[days()[0]] = [usage_line(SONNET, tokens())]
    monkeypatch.setenv("TOKENMETER_OPENAI_ADMIN_KEY", "sk-admin-revoked")
    with ServerThread(claude) as server:
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_URL", server.url)
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", ANTHROPIC_KEY)
        code, out, err = run(capsys, "reconcile", "fetch", "--since", "5d")
    assert code == 1
    assert "; anthropic snapshot " in out
    assert err.startswith("tokenmeter: /v1/organization/usage/completions: the Admin API answered")
    assert {(r["provider"], r["endpoint"]) for r in stored(database)} == {
        ("anthropic", "usage"),
        ("anthropic", "cost"),
    }


def test_embeddings_traffic_reconciles_against_the_embeddings_usage_report(
    database: str, admin: FakeOpenAIAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    embedding = "text-embedding-3-small"
    day = days()[0]
    at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    sent = [
        make_event(started_at=at, provider="openai", model=embedding, usage=Usage(input=25_000))
        for _ in range(2)
    ]

    async def write() -> None:
        engine = make_engine(database)
        try:
            await write_batch(engine, [event_to_row(e) for e in sent])
        finally:
            await engine.dispose()

    asyncio.run(write())
    admin.usage, admin.cost = {}, {}
    admin.embeddings[day] = [embeddings_result(embedding, 50_000, requests=2)]
    data = report(capsys)
    (row,) = data["rows"]
    assert (row["vendor"], row["model"], row["verdict"]) == ("openai", embedding, "match")
    assert row["provider"]["tokens"]["input"] == row["proxy"]["tokens"]["input"] == 50_000
    assert set(data["snapshots"]["openai"]) == {"usage", "cost", "usage_embeddings"}


def test_one_file_with_both_providers_pages_is_a_snapshot_of_each(
    database: str, admin: FakeOpenAIAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = {"starting_at": "2026-11-20T00:00:00Z", "ending_at": "2026-11-21T00:00:00Z"}
    claude = {
        "data": [{**bucket, "results": [usage_line(SONNET, tokens())]}],
        "has_more": False,
        "next_page": None,
    }
    openai_pages = json.loads(_saved_pages(admin), parse_float=Decimal)
    path = tmp_path / "both.json"
    path.write_text(page_json([openai_pages[0], claude, openai_pages[1]]))
    out = tokenmeter(capsys, "reconcile", "import", str(path))
    lines = out.splitlines()
    assert [line.split("; ")[-1].split()[0] for line in lines] == ["openai", "anthropic"]
    assert lines[0].startswith(f"imported {path}: 1 usage page (1 bucket, 2 lines), 1 cost page")
    rows = stored(database)
    by_provider = {r["provider"]: r["snapshot_id"] for r in rows}
    assert len(set(by_provider.values())) == 2
    assert sorted((r["provider"], r["endpoint"]) for r in rows) == [
        ("anthropic", "usage"),
        ("openai", "cost"),
        ("openai", "usage"),
    ]
