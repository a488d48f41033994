"""The arithmetic of reports, on values small enough to check by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from proxy.reports import ReportError, Totals, Window
from proxy.reports.distribution import gini, percentile, top_share
from proxy.tasks import TaskRecord, roi

VALUES = [Fraction(v) for v in (0, 100_000, 200_000, 500_000, 3_000_000)]


@pytest.mark.parametrize(
    ("p", "expected"),
    [(50, 200_000), (75, 500_000), (90, 2_000_000), (95, 2_500_000), (99, 2_900_000)],
)
def test_percentiles_interpolate_between_ranks(p: int, expected: int) -> None:
    assert percentile(VALUES, p) == expected


def test_gini_and_top_share_of_a_power_law() -> None:
    # Σ(2i−n−1)x = −2·100k + 2·500k + 4·3M = 12.8M; n·Σx = 5 · 3.8M
    assert gini(VALUES) == Fraction(12_800_000, 19_000_000)
    assert top_share(VALUES, 1) == Fraction(3_000_000, 3_800_000)
    assert top_share(VALUES, 10) == 1


def test_equal_use_has_gini_zero_and_nobody_has_none() -> None:
    assert gini([Fraction(5)] * 4) == 0
    assert gini([Fraction(0)] * 3) is None


def test_blended_sticker_and_discount_from_totals() -> None:
    totals = Totals(
        requests=2,
        tokens={
            "input": 1_000,
            "cache_write_5m": 0,
            "cache_write_1h": 0,
            "cache_read": 99_000,
            "output": 500,
        },
        cost_usd=Decimal("0.0670"),
        sticker_usd=Decimal("0.5125"),
    )
    data = totals.as_json()
    assert data["blended_usd_per_mtok"] == "0.666667"  # 0.067 / 100 500 tokens × 10⁶
    assert data["sticker_usd_per_mtok"] == "5.099502"
    assert data["cache_savings_usd"] == "0.445500"
    assert data["cache_discount"] == "0.8693"  # 0.4455 / 0.5125
    assert data["input_output_ratio"] == "200.00"
    assert data["cache_hit_rate"] == "0.9900"


def test_window_annualizes_by_its_exact_length() -> None:
    end = datetime(2026, 11, 30, tzinfo=UTC)
    week = Window(end - timedelta(days=7), end)
    assert week.annualize(Decimal(70)) == Decimal(3650)
    assert week.per_month(1_200) == 5_214  # 1200 × 365 / 84 = 5214.29
    half_day = Window(end - timedelta(hours=12), end)
    assert half_day.days == Decimal("0.5")
    with pytest.raises(ReportError, match="must end after it starts"):
        Window(end, end)


def test_task_value_prefers_an_explicit_value_over_hours_times_rate() -> None:
    hours = TaskRecord("T", human_hours=Decimal(4), hourly_rate_usd=Decimal(150))
    assert hours.value() == (Decimal(600), "human_hours x hourly_rate_usd")
    both = TaskRecord(
        "T", human_hours=Decimal(4), hourly_rate_usd=Decimal(150), value_usd=Decimal(50)
    )
    assert both.value() == (Decimal(50), "value_usd")
    assert TaskRecord("T", human_hours=Decimal(4)).value() == (None, None)
    assert roi(Decimal(600), Decimal("7.5")) == Decimal("80.00")
    assert roi(Decimal(600), Decimal(0)) is None
