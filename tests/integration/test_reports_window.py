"""One window, one answer; unknown dollars never $0: every grouping and view of the REST API over
the same odd window (10:37 to 13:05) counts the same events, on SQLite and PostgreSQL.

Seed: events of one default ``make_event`` usage each (32,570 tokens, ``sample_cost()`` when
priced) placed on both sides of each edge of the window, some on a model without a price.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from proxy.store.engine import make_engine
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import UsageEvent
from tests.conftest import Proxy
from tests.factories import make_event, sample_cost

DAY = datetime(2026, 11, 20, tzinfo=UTC)
START, END = DAY.replace(hour=10, minute=37), DAY.replace(hour=13, minute=5)
WINDOW = {"start": START.isoformat(), "end": END.isoformat()}
TOKENS = 120 + 2000 + 30_000 + 450  # make_event's usage, five kinds
PRICE = sample_cost().total  # $0.03361
UNKNOWN = "mystery-9"


def _at(hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute, second=second, microsecond=micro)


# (time, user, team, model, task); priced unless the model is UNKNOWN.
SEED = [
    (_at(10, 5), "ada", "core", "claude-sonnet-4-5", "T-A"),  # before
    (_at(10, 36, 59, 999_999), "ada", "core", "claude-sonnet-4-5", None),  # before, by 1 µs
    (_at(10, 37), "ada", "core", "claude-sonnet-4-5", "T-A"),  # the first instant inside
    (_at(10, 50), "bob", "core", "claude-opus-4-5", "T-B"),
    (_at(11, 15), "bob", "web", UNKNOWN, "T-B"),
    (_at(12, 0), "ada", "core", "claude-sonnet-4-5", None),
    (_at(12, 30), "cyd", "web", "claude-sonnet-4-5", "T-C"),
    (_at(13, 4, 59, 999_999), "cyd", "web", UNKNOWN, "T-C"),  # the last instant inside
    (_at(13, 5), "ada", "core", "claude-sonnet-4-5", "T-A"),  # the end is not inside
    (_at(13, 40), "ada", "core", "claude-sonnet-4-5", None),  # after
    (DAY - timedelta(minutes=1), "bob", "core", "claude-sonnet-4-5", "T-B"),  # the day before
    (DAY + timedelta(days=1, hours=12), "dee", "web", UNKNOWN, "T-D"),  # the day after
]
INSIDE: dict[str, int | str] = {
    "requests": 6,
    "unpriced_requests": 2,
    "unpriced_tokens": 2 * TOKENS,
}
INSIDE |= {"total_tokens": 6 * TOKENS, "cost_usd": str((4 * PRICE).quantize(Decimal("1e-6")))}


def _event(at: datetime, user: str, team: str, model: str, task: str | None) -> UsageEvent:
    priced = model != UNKNOWN
    return make_event(
        started_at=at,
        user=user,
        team=team,
        model=model,
        priced=priced,
        task=task,
        session=f"s-{user}",
    )


@pytest.fixture
async def seeded(make_proxy: Callable[..., Proxy], db_url: str) -> Proxy:
    proxy = make_proxy(database_url=db_url)
    engine = make_engine(db_url)
    try:
        await write_batch(engine, [event_to_row(_event(*row)) for row in SEED])
    finally:
        await engine.dispose()
    return proxy


def _get(proxy: Proxy, path: str, **params: Any) -> Any:
    response = proxy.http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _summary(total: dict[str, Any]) -> dict[str, Any]:
    return {name: total[name] for name in INSIDE}


def test_every_grouping_and_view_counts_the_same_events(seeded: Proxy) -> None:
    answers: dict[str, dict[str, Any]] = {}
    for group_by in ("user", "team", "model", "provider", "task", "session", "day"):
        data = _get(seeded, "/api/v1/usage", group_by=group_by, **WINDOW)
        assert (data["start"], data["end"]) == (START.isoformat(), END.isoformat())  # echoed
        answers[f"usage by {group_by}"] = _summary(data["total"])
    for by in ("model", "user", "team", "provider", "day"):
        data = _get(seeded, "/api/v1/reports/blended", by=by, **WINDOW)
        assert (data["start"], data["end"]) == (START.isoformat(), END.isoformat())
        answers[f"blended by {by}"] = _summary(data["total"])
    assert answers == dict.fromkeys(answers, INSIDE)
    tasks = _get(seeded, "/api/v1/tasks", **WINDOW)
    assert tasks["start"] == START.isoformat()
    listed = {row["task_id"]: row["requests"] for row in tasks["rows"]}
    by_task = _get(seeded, "/api/v1/usage", group_by="task", **WINDOW)["rows"]
    assert listed == {row["task"]: row["requests"] for row in by_task if row["task"] != "(none)"}
    assert listed == {"T-A": 1, "T-B": 2, "T-C": 2}


def test_an_unpriced_model_is_unknown_not_free(seeded: Proxy) -> None:
    by_model = _get(seeded, "/api/v1/reports/blended", by="model", **WINDOW)
    rows = {row["model"]: row for row in by_model["rows"]}
    mystery = rows[UNKNOWN]
    assert (mystery["cost_usd"], mystery["blended_usd_per_mtok"], mystery["sticker_usd"]) == (
        None,
        None,
        None,
    )
    assert (mystery["unpriced_requests"], mystery["unpriced_tokens"]) == (2, 2 * TOKENS)
    total = by_model["total"]
    assert total["cost_complete"] is False
    assert total["priced_tokens"] == 4 * TOKENS
    # $/MTok over priced tokens only: what a priced token costs, not pulled down by unknowns
    per_mtok = (4 * PRICE * 1_000_000 / (4 * TOKENS)).quantize(Decimal("1e-6"))
    assert total["blended_usd_per_mtok"] == str(per_mtok)  # 1.031931, not 0.687954
    assert "2 requests (65,140 tokens) without a known price" in total["cost_note"]
    only_unknown = _get(seeded, "/api/v1/tasks/T-D")
    assert (only_unknown["cost_usd"], only_unknown["blended_usd_per_mtok"]) == (None, None)
    assert only_unknown["roi"] is None
    mixed = _get(seeded, "/api/v1/tasks/T-C")
    assert (mixed["cost_usd"], mixed["cost_complete"]) == (
        str(PRICE.quantize(Decimal("1e-6"))),
        False,
    )
    assert (mixed["unpriced_requests"], mixed["unpriced_tokens"]) == (1, TOKENS)
    assert mixed["by_model"][UNKNOWN]["cost_usd"] is None


def test_roi_divides_by_the_whole_task_cost_whatever_the_window(seeded: Proxy) -> None:
    seeded.http.patch("/api/v1/tasks/T-A", json={"value_usd": "1"})
    listed = _get(seeded, "/api/v1/tasks", **WINDOW)
    task = next(row for row in listed["rows"] if row["task_id"] == "T-A")
    whole = 3 * PRICE  # 10:05, 10:37 and 13:05: one of them inside the window
    assert task["cost_usd"] == str(PRICE.quantize(Decimal("1e-6")))
    assert task["task_cost_usd"] == str(whole.quantize(Decimal("1e-6")))
    assert task["roi"] == str((1 / whole).quantize(Decimal("0.01")))  # 9.92, not 29.75
    roi = _get(seeded, "/api/v1/reports/roi", **WINDOW)
    assert roi["start"] == START.isoformat()
    assert roi["total"]["roi"] == task["roi"]


def test_spend_of_unpriced_requests_is_unknown_in_spend_and_its_spread(seeded: Proxy) -> None:
    window = {"days": "30", "end": (DAY + timedelta(days=2)).isoformat()}
    data = _get(seeded, "/api/v1/reports/compensation", **window)
    people = {p["user"]: p for p in data["people"]}
    assert (people["dee"]["spend_usd"], people["dee"]["annualized_spend_usd"]) == (None, None)
    assert (people["bob"]["spend_complete"], people["bob"]["unpriced_requests"]) == (False, 1)
    assert people["ada"]["spend_complete"] is True
    assert (data["org"]["spend_complete"], data["org"]["unpriced_requests"]) == (False, 3)
    spread = _get(seeded, "/api/v1/reports/distribution", metric="cost_usd", **window)
    assert (spread["cost_complete"], spread["unpriced_requests"]) == (False, 3)
