"""What each subscription seat is worth: per seat and calendar month (UTC), the API-equivalent
value of its holder's seat traffic against the seat's price, and which would have been cheaper.

A seat holder's subscription events cost $0 paid and keep their list price as
``api_equivalent_usd`` (``proxy.billing``, ``Totals``). For a month, ``value ÷ price`` is that
list price over the seat's ``usd_per_month`` (``proxy.seats``): at 1 or more the seat paid off
(the same tokens on the API would have cost at least the seat), below 1 the API would have been
cheaper for that person, by ``price − value``. The month in progress is counted to date (its
value can still grow; the price is the whole month's). A person with seat traffic but no seat
record gets no verdict, only the value (``tokenmeter seats set`` gives the price). Paid
per-token spend of the same person (API keys) is shown beside it, never added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.reports.totals import ReportError, Totals, exact, money, ratio
from proxy.reports.usage import NONE_KEY, usage
from proxy.reports.window import Filters
from proxy.seats import Seat, load_seats

SEAT_PAYS_OFF = "seat pays off"
API_CHEAPER = "API cheaper"
NO_PRICE = "no seat price"
MAX_MONTHS = 120


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of ``moment``'s month."""
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def last_months(count: int, now: datetime) -> list[datetime]:
    """The first instants of the ``count`` calendar months up to and including ``now``'s."""
    if not 1 <= count <= MAX_MONTHS:
        raise ReportError(f"months must be between 1 and {MAX_MONTHS}, got {count}")
    months = [month_start(now)]
    for _ in range(count - 1):
        first = months[-1]
        months.append(
            datetime(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1, tzinfo=UTC)
        )
    return months[::-1]


@dataclass(frozen=True, slots=True)
class SeatMonth:
    """One seat in one month: its value on the API and its price."""

    user: str
    month: date
    seat: Seat | None
    totals: Totals  # the person's traffic that month: seat (API-equivalent) and paid
    to_date: bool  # the month is still running

    @property
    def value_usd(self) -> Decimal:
        return self.totals.api_equivalent_usd

    @property
    def price_usd(self) -> Decimal | None:
        return None if self.seat is None else self.seat.usd_per_month

    @property
    def value_per_price(self) -> Decimal | None:
        price = self.price_usd
        return None if price is None else ratio(self.value_usd, price)

    @property
    def verdict(self) -> str:
        price = self.price_usd
        if price is None:
            return NO_PRICE
        return SEAT_PAYS_OFF if self.value_usd >= price else API_CHEAPER

    @property
    def seat_saves_usd(self) -> Decimal | None:
        """What the seat saved against paying the API for the same tokens (negative: what
        it cost more than the API would have)."""
        price = self.price_usd
        return None if price is None else self.value_usd - price

    def as_json(self) -> dict[str, Any]:
        price, per, saves = self.price_usd, self.value_per_price, self.seat_saves_usd
        return {
            "user": self.user,
            "month": self.month.strftime("%Y-%m"),
            "month_to_date": self.to_date,
            "plan": self.seat.plan if self.seat else None,
            "seat_usd": None if price is None else exact(price),
            "api_equivalent_usd": money(self.value_usd),
            "seat_requests": self.totals.api_equivalent_requests,
            "seat_tokens": self.totals.api_equivalent_tokens,
            "value_per_price": None if per is None else str(per),
            "seat_saves_usd": None if saves is None else money(saves),
            "verdict": self.verdict,
            "paid_usd": money(self.totals.cost_usd) if self.totals.cost_known else None,
        }


@dataclass(slots=True)
class SeatReport:
    months: list[datetime]
    rows: list[SeatMonth]

    def as_json(self) -> dict[str, Any]:
        return {
            "months": [m.strftime("%Y-%m") for m in self.months],
            "rows": [row.as_json() for row in self.rows],
        }


async def seat_report(engine: AsyncEngine, months: int, now: datetime | None = None) -> SeatReport:
    """Every seat holder (and everyone with seat traffic) per month, over the last ``months``
    calendar months up to ``now`` (module doc)."""
    now = now or datetime.now(UTC)
    starts = last_months(months, now)
    seats = await load_seats(engine)
    rows: list[SeatMonth] = []
    for start in starts:
        end = min(next_month(start), now)
        spent = dict(await usage(engine, "user", Filters(start, end)))
        spent.pop(NONE_KEY, None)
        users = set(seats) | {u for u, t in spent.items() if t.api_equivalent_requests}
        for user in sorted(users):
            totals = spent.get(user, Totals())
            to_date = end < next_month(start)
            rows.append(SeatMonth(user, start.date(), seats.get(user), totals, to_date))
    return SeatReport(starts, rows)
