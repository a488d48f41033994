"""``tokenmeter report reconcile`` and ``/api/v1/reports/reconcile``: the proxy vs the bill.

Three days of Sonnet 4.6 and Haiku 4.5 traffic (tests/factories events, priced by the real
pricing engine as the meter prices them, with the company's price file when a test gives one)
are recorded; the fake Admin API serves the same tokens in Anthropic's usage report and their
list-price dollars (Sonnet 4.6 $3/$15, Haiku 4.5 $1/$5 per MTok; cache writes 1.25× and 2×,
reads 0.1× input) in its cost report. Then:
- as recorded, every row is ``match`` and coverage is 100 %;
- the provider revises one day with 12,345 more input tokens (a later fetch): that row is
  ``proxy_low`` by exactly 12,345 tokens and $0.037035, the others still match;
- a price file that misprices Haiku (an override at twice the list price): Haiku's rows are
  ``proxy_high`` in dollars, tokens matching, and say the override priced them.
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

import anthropic
import pytest

from proxy.cli import main
from proxy.pricing import Pricer, load_overrides
from proxy.store.engine import make_engine, upgrade
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import Usage, UsageEvent
from tests.conftest import Proxy
from tests.factories import make_event
from tests.fakes.anthropic_admin import ADMIN_KEY, FakeAdmin, cost_lines, other_cost, usage_line
from tests.servers import ServerThread

SONNET, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"
LIST_PRICES = {
    SONNET: {"input": "3", "cache_write_5m": "3.75", "cache_write_1h": "6", "cache_read": "0.3"},
    HAIKU: {"input": "1", "cache_write_5m": "1.25", "cache_write_1h": "2", "cache_read": "0.1"},
}
LIST_PRICES[SONNET]["output"], LIST_PRICES[HAIKU]["output"] = "15", "5"
PRICES = {m: {k: Decimal(v) for k, v in p.items()} for m, p in LIST_PRICES.items()}
TURN = Usage(input=1200, cache_write_5m=3000, cache_write_1h=1000, cache_read=40000, output=800)
TURNS = 3  # per day and model
EXTRA = 12_345
MISPRICED = """
[[model]]
provider = "anthropic"
name = "claude-haiku-4-5"
input = "2"
output = "10"
cache_read = "0.2"
cache_write_5m = "2.5"
cache_write_1h = "4"
effective_from = 2026-01-01
source = "a typo in the price sheet"
"""


def days() -> list[date]:
    today = datetime.now(UTC).date()
    return [today - timedelta(days=n) for n in (3, 2, 1)]


def tokens(turns: int = TURNS) -> dict[str, int]:
    return {kind: count * turns for kind, count in TURN.by_kind().items()}


def events(pricer: Pricer) -> list[UsageEvent]:
    made = []
    for day in days():
        for model in (SONNET, HAIKU):
            for n in range(TURNS):
                at = datetime(day.year, day.month, day.day, 10, n, tzinfo=UTC)
                event = make_event(started_at=at, model=model, usage=TURN, priced=False)
                made.append(event.with_cost(pricer.price(event)))
    return made


async def _record(url: str, pricer: Pricer) -> None:
    engine = make_engine(url)
    try:
        await write_batch(engine, [event_to_row(e) for e in events(pricer)])
    finally:
        await engine.dispose()


def record(url: str, prices_file: Path | None = None) -> None:
    overrides = load_overrides(prices_file) if prices_file else None
    asyncio.run(_record(url, Pricer(overrides)))


def bill(fake: FakeAdmin) -> None:
    """The provider's reports for the recorded traffic, as Anthropic would count it."""
    for day in days():
        fake.usage[day] = [usage_line(m, tokens(), api_key_id=f"apikey_{m}") for m in PRICES]
        fake.cost[day] = [line for m in PRICES for line in cost_lines(m, tokens(), PRICES[m])]
    fake.cost[days()[0]].append(other_cost("code_execution", "5"))


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdmin]:
    fake = FakeAdmin(page_size=3)
    bill(fake)
    with ServerThread(fake) as server:
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_URL", server.url)
        monkeypatch.setenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", ADMIN_KEY)
        yield fake


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/reconcile.db"
    upgrade(url)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    return url


def tokenmeter(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return out


def report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    tokenmeter(capsys, "reconcile", "fetch", "--since", "5d")
    data: dict[str, Any] = json.loads(tokenmeter(capsys, "report", "reconcile", "--json"))
    return data


def rows_by_key(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["day"], row["model"]): row for row in data["rows"]}


def test_recorded_traffic_matches_the_bill_everywhere(
    database: str, admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database)
    data = report(capsys)
    assert data["verdicts"] == {"match": 6, "proxy_low": 0, "proxy_high": 0}
    assert data["coverage"] == "1.0000"
    sonnet = rows_by_key(data)[(days()[0].isoformat(), SONNET)]
    assert sonnet["proxy"]["tokens"] == sonnet["provider"]["tokens"] == tokens()
    # 3 turns: 3600 in × $3, 9000 5m × $3.75, 3000 1h × $6, 120000 read × $0.30, 2400 out × $15
    assert sonnet["proxy"]["usd"] == sonnet["provider"]["usd"] == "0.134550"
    assert (sonnet["token_diff"], sonnet["usd_diff"], sonnet["usd_diff_pct"]) == (
        0,
        "0.000000",
        "0.00",
    )
    assert data["total"]["proxy"]["usd"] == data["total"]["provider"]["usd"]
    assert data["other_costs"]["provider_usd"] == {"code_execution": "0.050000"}


def test_a_day_with_extra_provider_tokens_is_proxy_low_by_exactly_those(
    database: str, admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database)
    assert report(capsys)["verdicts"]["match"] == 6
    revised = days()[1]
    admin.usage[revised][0]["uncached_input_tokens"] += EXTRA  # Sonnet's line: a later revision
    extra_cost = {"input": EXTRA}
    admin.cost[revised] += cost_lines(SONNET, extra_cost, PRICES[SONNET])
    data = report(capsys)
    assert data["verdicts"] == {"match": 5, "proxy_low": 1, "proxy_high": 0}
    low = rows_by_key(data)[(revised.isoformat(), SONNET)]
    assert low["verdict"] == "proxy_low"
    assert low["token_diff"] == -EXTRA
    assert low["provider"]["tokens"]["input"] - low["proxy"]["tokens"]["input"] == EXTRA
    assert low["usd_diff"] == "-0.037035"  # 12,345 × $3/MTok
    assert low["token_diff_pct"] == "-8.21"  # of the provider's 150,345
    assert data["coverage"] == "0.9853"  # 828,000 of 840,345


def test_a_mispriced_model_is_proxy_high_in_dollars(
    database: str,
    admin: FakeAdmin,
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
        if model == HAIKU:
            assert row["verdict"] == "proxy_high"
            assert row["token_diff"] == 0
            assert row["usd_diff"] == row["provider"]["usd"]  # twice the list price
            assert row["usd_diff_pct"] == "100.00"
            assert "proxy dollars at the company's price override or discount" in row["notes"]
        else:
            assert row["verdict"] == "match"
            assert row["notes"] == []
    table = tokenmeter(capsys, "report", "reconcile")
    assert "verdicts: 3 match, 0 proxy_low, 3 proxy_high" in table
    assert "coverage: 100.0% of provider-reported tokens seen by the proxy" in table


def test_the_rest_api_answers_the_same_report_and_csv(
    make_proxy: Callable[..., Proxy],
    admin: FakeAdmin,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = db_url  # SQLite and PostgreSQL: the day buckets are SQL per dialect
    proxy = make_proxy(database_url=url)
    record(url)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", url)
    tokenmeter(capsys, "reconcile", "fetch", "--since", "5d")
    answer = proxy.http.get("/api/v1/reports/reconcile", params={"days": 5})
    assert answer.status_code == 200, answer.text
    assert answer.json()["verdicts"] == {"match": 6, "proxy_low": 0, "proxy_high": 0}
    sheet = proxy.http.get("/api/v1/reports/reconcile", params={"days": 5, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [row["verdict"] for row in rows] == ["match"] * 6 + ["match"]
    assert rows[-1]["day"] == "(total)"
    assert rows[0]["provider.tokens.cache_read"] == "120000"


def test_priority_tier_and_one_sided_rows_say_why(
    database: str, admin: FakeAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database)
    first, second, third = days()
    admin.usage[first][0]["service_tier"] = "priority"  # Sonnet's line: not in the cost report
    del admin.usage[second], admin.cost[second]  # the provider has nothing for that day
    data = report(capsys)
    rows = rows_by_key(data)
    priority = rows[(first.isoformat(), SONNET)]
    assert priority["verdict"] == "match"
    assert priority["usd_diff"] is None
    assert priority["notes"] == [
        "138,000 tokens on Priority Tier, which the provider's cost report excludes: "
        "dollars not compared"
    ]
    missing = rows[(second.isoformat(), HAIKU)]
    assert missing["verdict"] == "proxy_high"
    assert missing["token_diff"] == 138_000
    assert missing["provider"]["usd"] is None
    assert missing["notes"] == [
        "not in the provider's stored usage report (fetch again, or another org)"
    ]
    assert data["verdicts"] == {"match": 4, "proxy_low": 0, "proxy_high": 2}
    assert data["coverage"] == "1.0000"


def test_traffic_through_the_real_sdk_matches_the_providers_count(
    proxy: Proxy,
    claude: anthropic.Anthropic,
    admin: FakeAdmin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = {
        "input_tokens": 1200,
        "cache_creation_input_tokens": 4000,
        "cache_creation": {"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 1000},
        "cache_read_input_tokens": 40000,
        "output_tokens": 800,
        "service_tier": "standard",
    }
    headers = {"x-tokenmeter-task": "R-1", "x-fake-usage": json.dumps(usage)}
    for stream in (False, True, False):
        answer = claude.messages.create(
            model=SONNET,
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            extra_headers=headers,
        )
        if isinstance(answer, anthropic.Stream):
            for _ in answer:  # read to the end, as a client does
                pass
    proxy.task("R-1", 3)
    today = datetime.now(UTC).date()
    admin.usage, admin.cost = {}, {}  # the provider saw exactly these three requests today
    admin.usage[today] = [usage_line(SONNET, tokens())]
    admin.cost[today] = cost_lines(SONNET, tokens(), PRICES[SONNET])
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/tokenmeter.db")
    tokenmeter(capsys, "reconcile", "fetch", "--since", "1d")
    data = json.loads(tokenmeter(capsys, "report", "reconcile", "--since", "1d", "--json"))
    (row,) = data["rows"]
    assert (row["day"], row["model"], row["verdict"]) == (today.isoformat(), SONNET, "match")
    assert row["proxy"]["tokens"] == tokens()
    assert row["proxy"]["usd"] == row["provider"]["usd"] == "0.134550"


def _hourly_usage(day: date, model: str) -> dict[str, Any]:
    """The day's tokens of ``model`` as two hourly buckets, as a person might save them."""
    half = {kind: count // 2 for kind, count in tokens().items()}
    rest = {kind: count - half[kind] for kind, count in tokens().items()}
    buckets = []
    for hour, part in ((10, half), (11, rest)):
        start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        buckets.append(
            {
                "starting_at": start.isoformat(),
                "ending_at": (start + timedelta(hours=1)).isoformat(),
                "results": [usage_line(model, part)],
            }
        )
    return {"data": buckets, "has_more": False, "next_page": None}


def test_the_newest_snapshot_of_a_report_wins_for_its_days(
    database: str,
    admin: FakeAdmin,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    record(database)
    first = days()[0]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(_hourly_usage(first, SONNET)))
    long_ago = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    os.utime(older, (long_ago, long_ago))
    tokenmeter(capsys, "reconcile", "import", str(older))
    data = report(capsys)  # the fetch is newer than the saved file: it alone counts
    assert data["verdicts"] == {"match": 6, "proxy_low": 0, "proxy_high": 0}
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(_hourly_usage(first, SONNET)))
    tokenmeter(capsys, "reconcile", "import", str(newer))
    data = json.loads(tokenmeter(capsys, "report", "reconcile", "--json"))
    rows = rows_by_key(data)
    # The newer usage page replaces that day's usage (Sonnet only, in hours), not its costs.
    assert rows[(first.isoformat(), SONNET)]["verdict"] == "match"
    assert rows[(first.isoformat(), SONNET)]["provider"]["tokens"] == tokens()
    haiku = rows[(first.isoformat(), HAIKU)]
    assert haiku["verdict"] == "proxy_high"
    assert haiku["provider"]["total_tokens"] == 0
    assert haiku["provider"]["usd"] == "0.044850"
    assert data["verdicts"] == {"match": 5, "proxy_low": 0, "proxy_high": 1}


def test_the_web_page_shows_the_api_report_and_its_csv(
    make_proxy: Callable[..., Proxy],
    admin: FakeAdmin,
    database: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = make_proxy(database_url=database)
    empty = proxy.http.get("/web/reconcile")
    assert "No provider reports for this period yet" in empty.text
    record(database)
    admin.usage[days()[1]][0]["uncached_input_tokens"] += EXTRA
    tokenmeter(capsys, "reconcile", "fetch", "--since", "5d")
    page = proxy.http.get("/web/reconcile", params={"period": "7d"})
    assert page.status_code == 200, page.text
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    api = proxy.http.get(
        "/api/v1/reports/reconcile", params={"days": 7, "end": f"{tomorrow}T00:00:00+00:00"}
    ).json()
    assert api["verdicts"] == {"match": 5, "proxy_low": 1, "proxy_high": 0}
    assert f'data-figure="coverage" data-exact="{api["coverage"]}"' in page.text
    assert 'data-figure="mismatches" data-exact="1"' in page.text
    low = f'data-row="{days()[1]}:anthropic:{SONNET}" data-verdict="proxy_low"'
    assert low in page.text
    sheet = proxy.http.get("/web/reconcile", params={"period": "7d", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [row["verdict"] for row in rows] == [row["verdict"] for row in api["rows"]] + [
        api["total"]["verdict"]
    ]
