"""The dashboard's pure parts: the window a URL asks for, money as shown, the Lorenz curve,
and session cookies that cannot be forged or outlive their expiry."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from proxy.config import Settings
from proxy.reports import ReportError, Totals
from proxy.web.access import Sessions
from proxy.web.figures import lorenz, top_repos
from proxy.web.format import multiple, percent, usd
from proxy.web.period import view_of

TODAY = date(2026, 11, 27)
ADMIN = "admin-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("today", date(2026, 11, 27)),
        ("7d", date(2026, 11, 21)),
        ("30d", date(2026, 10, 29)),
        ("mtd", date(2026, 11, 1)),
    ],
)
def test_periods_start_on_utc_midnights_and_stay_open(period: str, start: date) -> None:
    f = view_of({"period": period, "team": "core"}, TODAY).filters()
    assert f.start == datetime(start.year, start.month, start.day, tzinfo=UTC)
    assert (f.end, f.team) == (None, "core")


def test_a_custom_period_includes_its_last_day() -> None:
    view = view_of({"period": "custom", "start": "2026-10-01", "end": "2026-10-31"}, TODAY)
    f = view.filters()
    assert (f.start, f.end) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert view.query(format="csv") == ("period=custom&start=2026-10-01&end=2026-10-31&format=csv")


@pytest.mark.parametrize(
    "params",
    [
        {"period": "fortnight"},
        {"period": "custom", "start": "yesterday"},
        {"period": "custom", "start": "2026-10-02", "end": "2026-10-01"},
    ],
)
def test_a_window_that_makes_no_sense_is_refused(params: dict[str, str]) -> None:
    with pytest.raises(ReportError):
        view_of(params, TODAY)


def test_money_and_ratios_as_shown() -> None:
    assert usd("1234567.891") == "$1,234,567.89"
    assert usd("0.012345") == "$0.0123"
    assert usd(None) == "unknown"
    assert percent("0.5912") == "59.1%"
    assert multiple("12.346") == "12.35×"
    assert multiple("139017.61") == "139,018×"


def test_lorenz_curve_of_an_unequal_team() -> None:
    points = lorenz([Fraction(0), Fraction(1), Fraction(3)])["points"]
    assert [(round(p["x"], 1), p["y"]) for p in points] == [
        (0.0, 0.0),
        (33.3, 0.0),
        (66.7, 25.0),
        (100.0, 100.0),
    ]


def test_a_session_cookie_is_signed_and_expires() -> None:
    sessions = Sessions(Settings(admin_token=ADMIN))
    cookie = sessions.issue("viewer")
    assert ADMIN not in cookie
    assert sessions.caller(cookie, "203.0.113.9", {}).role == "viewer"
    assert sessions.caller(cookie.replace("viewer", "admin", 1), "203.0.113.9", {}).role is None
    expired = sessions.issue("admin", now=1_000_000)
    assert sessions.caller(expired, "127.0.0.1", {}).role is None
    other = Sessions(Settings(admin_token=ADMIN + "x"))
    assert other.caller(cookie, "127.0.0.1", {}).role is None


def test_top_repositories_keep_ten_sum_the_rest_and_put_unattributed_last() -> None:
    by_repo = [
        (f"github.com/acme/r{n:02d}", Totals(requests=1, cost_usd=Decimal(20 - n)))
        for n in range(12)
    ]
    by_repo.append(("unattributed", Totals(requests=3, cost_usd=Decimal(9))))
    rows = top_repos(by_repo)
    assert [row["repo"] for row in rows] == [
        *(f"github.com/acme/r{n:02d}" for n in range(10)),
        "other (2 repositories)",
        "unattributed",
    ]
    assert rows[10]["cost_usd"] == "19.000000"  # $10 + $9
    assert rows[10]["requests"] == 2
    assert rows[0]["share_of_spend"] == "0.109290"  # $20 of $183
    assert sum(Decimal(row["cost_usd"]) for row in rows) == 183
    assert top_repos([]) == []
