"""UsageEvent -> usage_events row, and the spool's JSON form of a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from proxy.store.aggregates import COST_COLUMNS
from proxy.store.rows import (
    event_to_row,
    iterations_from_json,
    json_to_row,
    problems_from_text,
    row_to_json,
)
from proxy.store.tables import usage_events
from proxy.store.types import from_scaled, to_scaled
from proxy.usage import Cost, Iteration, Status, Usage
from tests.factories import make_event, sample_cost


def test_row_fills_every_column_of_usage_events() -> None:
    row = event_to_row(make_event())
    assert set(row) == {column.name for column in usage_events.columns}


def test_row_carries_tokens_costs_and_attribution() -> None:
    event = make_event(usage=Usage(input=7, cache_write_1h=11, cache_read=13, output=17))
    row = event_to_row(event)
    assert row["event_id"] == event.event_id
    assert (row["input_tokens"], row["cache_write_1h_tokens"], row["output_tokens"]) == (7, 11, 17)
    assert row["cost_usd"] == sample_cost().total
    assert row["cost_web_search_usd"] == Decimal("0.010")
    assert row["cost_cache_write_5m_usd"] == Decimal("0.007500")
    assert (row["user"], row["team"], row["task"], row["attribution_source"]) == (
        "ada",
        "core",
        "T-1",
        "header",
    )
    assert (row["status"], row["model"], row["stream"]) == ("ok", "claude-sonnet-4-5", True)


def test_unknown_price_is_null_not_zero() -> None:
    row = event_to_row(make_event(priced=False))
    assert all(row[name] is None for name in COST_COLUMNS)
    assert row["price_version"] is None


def test_kind_missing_from_a_known_cost_is_zero_dollars() -> None:
    cost = Cost(Decimal("0.5"), {"output": Decimal("0.5")}, Decimal("0.5"), "v1")
    row = event_to_row(make_event(cost=cost))
    assert row["cost_output_usd"] == Decimal("0.5")
    assert row["cost_input_usd"] == Decimal(0)


def test_start_time_is_stored_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    row = event_to_row(make_event(started_at=datetime(2026, 11, 26, 15, 0, tzinfo=berlin)))
    assert row["ts"] == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
    assert row["ts"].utcoffset() == timedelta(0)


def test_spool_line_round_trips_exactly() -> None:
    cost = Cost(Decimal("0.0000000001"), {"input": Decimal("0.0000000001")}, Decimal(0), "v")
    row = event_to_row(make_event(cost=cost, status=Status.UPSTREAM_ERROR))
    line = row_to_json(row)
    assert "\n" not in line
    back = json_to_row(line)
    assert back == row
    assert isinstance(back["cost_usd"], Decimal)
    assert back["ts"].tzinfo is not None


def test_torn_spool_line_is_refused() -> None:
    line = row_to_json(event_to_row(make_event()))
    with pytest.raises(ValueError, match="Unterminated|Expecting"):
        json_to_row(line[: len(line) // 2])


@pytest.mark.parametrize(
    ("dollars", "stored"),
    [
        (Decimal("0.000003"), Decimal("0.0000030000")),
        (Decimal("0.00000000005"), Decimal("0.0000000001")),  # half away from zero, like PG
        (Decimal("-0.00000000005"), Decimal("-0.0000000001")),
        (Decimal("922337203.6854775807"), Decimal("922337203.6854775807")),
    ],
)
def test_sqlite_money_encoding_is_exact(dollars: Decimal, stored: Decimal) -> None:
    assert from_scaled(to_scaled(dollars)) == stored


def test_iterations_stop_reason_and_problems_survive_the_row_and_the_spool() -> None:
    event = make_event(usage=Usage(input=5, cache_write_5m=2, output=3))
    event.facts.stop_reason = "refusal"
    event.facts.problems = ("usage_negative", "usage_over_cap")
    event.facts.iterations = (
        Iteration("compaction", "claude-opus-4-8", Usage(input=4, output=1)),
        Iteration("advisor_message", "claude-fable-5", Usage(input=1, cache_write_5m=2, output=2)),
    )
    row = json_to_row(row_to_json(event_to_row(event)))
    assert (row["stop_reason"], row["usage_problem"]) == (
        "refusal",
        "usage_negative,usage_over_cap",
    )
    assert iterations_from_json(row["iterations"]) == event.facts.iterations
    assert problems_from_text(row["usage_problem"]) == event.facts.problems
    assert event_to_row(make_event())["iterations"] is None  # the usual answer: no detail


def test_a_line_spooled_before_migration_0003_still_replays() -> None:
    row = event_to_row(make_event())
    old = {k: v for k, v in row.items() if k not in ("stop_reason", "usage_problem", "iterations")}
    replayed = json_to_row(row_to_json(old))
    assert set(replayed) == set(row)
    assert (replayed["stop_reason"], replayed["iterations"]) == (None, None)
