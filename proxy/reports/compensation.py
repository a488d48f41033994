"""Token spend against compensation, per person, team and the whole company.

Spend comes from the rollup over a trailing window (default 30 days) and is annualized
(× 365 / window days). Compensation is each user's ``people`` row in effect on the window's last
day, converted to USD only with the company's configured rates (``to_usd``); a currency without a
rate makes the report refuse rather than guess. A person's team is the team in their people row
(the org chart), not the team header their traffic carried; users seen in traffic without a
people row are grouped under ``NO_RECORD``, and traffic with no user is counted only in the org.

Ratios (``spend_to_compensation``) use only people whose compensation is known, so a group's
ratio never mixes in spend nobody is paid for; ``uncovered_spend_usd`` shows what was left out.
A seat holder's seat (``proxy.seats``) is spend too: its price per month × 12 is added to their
annualized spend (``seat_usd_per_year``), since their seat traffic costs $0 per token; the
API-equivalent value of that traffic is shown beside it, never added.
Spend of requests without a price is unknown, never $0: ``spend_usd`` is null when none of a
row's requests has a price, and ``spend_complete`` false when some lack one (the dollars then
cover the priced ones only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.people import Person, in_effect, load_people, missing_rate_message
from proxy.reports.totals import RATIO, ReportError, Totals, exact, money
from proxy.reports.totals import add as add_totals
from proxy.reports.usage import NONE_KEY, usage
from proxy.reports.window import Filters
from proxy.seats import load_seats
from proxy.usage import as_utc

NO_RECORD = "(no people record)"
DAYS_PER_YEAR = 365
CENTS = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Window:
    """A time range; spend in it is scaled to a year by 365 days / its length."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ReportError(f"the window must end after it starts ({self.start} .. {self.end})")

    @property
    def days(self) -> Decimal:
        span = self.end - self.start
        micros = (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds
        return Decimal(micros) / Decimal(86_400_000_000)

    def annualize(self, amount: Decimal | int) -> Decimal:
        return Decimal(amount) * DAYS_PER_YEAR / self.days

    def per_month(self, tokens: int) -> int:
        """Tokens scaled to one month (a twelfth of a year), rounded half-even."""
        monthly = Decimal(tokens) * DAYS_PER_YEAR / (12 * self.days)
        return int(monthly.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    @property
    def last_day(self) -> date:
        """The UTC day the window's last instant falls on: whose compensation applies."""
        return as_utc(self.end - timedelta(microseconds=1)).date()

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": exact(self.days),
        }


def trailing(days: int, end: datetime | None = None) -> Window:
    """The ``days`` days up to ``end`` (default now)."""
    if days < 1:
        raise ReportError(f"days must be at least 1, got {days}")
    end = end or datetime.now(UTC)
    try:
        return Window(end - timedelta(days=days), end)
    except OverflowError:
        raise ReportError(f"{days} days before {end.isoformat()} is before year 1") from None


@dataclass(slots=True)
class Spend:
    """A person or a group: what they spent and what they are paid."""

    key: str
    totals: Totals = field(default_factory=Totals)
    compensation_usd: Decimal = Decimal(0)
    covered_spend: Decimal = Decimal(0)  # spend of members whose compensation is known
    headcount: int = 0
    seat_usd_per_year: Decimal = Decimal(0)  # the members' seats, 12 × price per month
    covered_seat_usd: Decimal = Decimal(0)  # of those, members whose compensation is known

    def add(self, other: Spend) -> None:
        add_totals(self.totals, other.totals)
        self.compensation_usd += other.compensation_usd
        self.covered_spend += other.covered_spend
        self.headcount += other.headcount
        self.seat_usd_per_year += other.seat_usd_per_year
        self.covered_seat_usd += other.covered_seat_usd

    @property
    def annual_compensation_usd(self) -> Decimal:
        """The members' pay in USD, to the cent."""
        return self.compensation_usd.quantize(CENTS)

    def annualized_usd(self, window: Window) -> Decimal | None:
        """The spend over ``window`` scaled to a year, to the cent; None when unknown."""
        if not self.totals.cost_known:
            return None
        annual = window.annualize(self.totals.cost_usd) + self.seat_usd_per_year
        return annual.quantize(CENTS)

    def spend_to_compensation(self, window: Window) -> Decimal | None:
        """Annualized spend (seats included) of the members whose pay is known, over their
        pay."""
        covered = window.annualize(self.covered_spend) + self.covered_seat_usd
        return _ratio(covered, self.compensation_usd)

    def tokens_per_month(self, window: Window) -> int | None:
        """Tokens per person per month; None without a person."""
        if not self.headcount:
            return None
        return window.per_month(self.totals.total_tokens // self.headcount)

    def as_json(self, window: Window) -> dict[str, Any]:
        cost = self.totals.cost_usd
        annualized, ratio = self.annualized_usd(window), self.spend_to_compensation(window)
        return {
            "spend_usd": money(cost) if self.totals.cost_known else None,
            "spend_complete": self.totals.cost_complete,
            "unpriced_requests": self.totals.unpriced_requests,
            "annualized_spend_usd": None if annualized is None else str(annualized),
            "seat_usd_per_year": str(self.seat_usd_per_year.quantize(CENTS)),
            "api_equivalent_usd": money(self.totals.api_equivalent_usd),
            "annual_compensation_usd": str(self.annual_compensation_usd),
            "spend_to_compensation": None if ratio is None else str(ratio),
            "uncovered_spend_usd": money(cost - self.covered_spend),
            "tokens": self.totals.total_tokens,
            "tokens_per_person_per_month": self.tokens_per_month(window),
            "headcount": self.headcount,
            "requests": self.totals.requests,
        }


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return (numerator / denominator).quantize(RATIO, rounding=ROUND_HALF_EVEN)


@dataclass(slots=True)
class CompensationReport:
    window: Window
    people: list[tuple[Spend, Person | None]]
    teams: list[Spend]
    org: Spend

    def as_json(self) -> dict[str, Any]:
        return {
            "window": self.window.as_json(),
            "people": [self._person_json(s, p) for s, p in self.people],
            "teams": [{"team": t.key, **t.as_json(self.window)} for t in self.teams],
            "org": self.org.as_json(self.window),
        }

    def _person_json(self, spend: Spend, person: Person | None) -> dict[str, Any]:
        return {
            "user": spend.key,
            "name": person.name if person else None,
            "team": team_of(person),
            "annual_compensation": None
            if person is None
            else person.as_json()["annual_compensation"],
            "currency": person.currency if person else None,
            **spend.as_json(self.window),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per person, team and the org, for CSV and terminal tables."""
        data = self.as_json()
        rows = [{"level": "person", **p} for p in data["people"]]
        rows += [{"level": "team", **t} for t in data["teams"]]
        rows.append({"level": "org", **data["org"]})
        return rows


def team_of(person: Person | None) -> str:
    """A person's team as reports show it: their people-table team, or ``NO_RECORD``."""
    return (person.team or NONE_KEY) if person else NO_RECORD


async def compensation_report(
    engine: AsyncEngine,
    window: Window,
    usd_per: Mapping[str, Decimal],
    by_user: list[tuple[str, Totals]] | None = None,
) -> CompensationReport:
    """Spend vs compensation for everyone with a people row or traffic in ``window``;
    ``by_user``: ``usage`` by user over ``window`` when the caller has read it already."""
    if by_user is None:
        by_user = await usage(engine, "user", Filters(window.start, window.end))
    spent = dict(by_user)
    unattributed = spent.pop(NONE_KEY, Totals())
    current = in_effect(await load_people(engine), window.last_day)
    usd = _usd(current, usd_per)
    seats = {user: seat.usd_per_month * 12 for user, seat in (await load_seats(engine)).items()}
    people = [
        (
            _person_spend(user, spent.get(user, Totals()), usd.get(user), seats.get(user)),
            current.get(user),
        )
        for user in sorted(set(spent) | set(current) | set(seats))
    ]
    teams: dict[str, Spend] = {}
    for spend, person in people:
        teams.setdefault(team_of(person), Spend(team_of(person))).add(spend)
    org = Spend("org", totals=unattributed)
    for team in teams.values():
        org.add(team)
    return CompensationReport(window, people, sorted(teams.values(), key=lambda t: t.key), org)


def _person_spend(
    user: str, totals: Totals, compensation_usd: Decimal | None, seat_per_year: Decimal | None
) -> Spend:
    known = compensation_usd is not None
    covered = totals.cost_usd if known else Decimal(0)
    seat = seat_per_year or Decimal(0)
    return Spend(
        user,
        totals,
        compensation_usd or Decimal(0),
        covered,
        headcount=1,
        seat_usd_per_year=seat,
        covered_seat_usd=seat if known else Decimal(0),
    )


def _usd(current: Mapping[str, Person], usd_per: Mapping[str, Decimal]) -> dict[str, Decimal]:
    missing: dict[str, list[str]] = {}
    converted: dict[str, Decimal] = {}
    for user, person in current.items():
        if person.currency == "USD":
            converted[user] = person.annual_compensation
        elif person.currency in usd_per:
            converted[user] = person.annual_compensation * usd_per[person.currency]
        else:
            missing.setdefault(person.currency, []).append(user)
    if missing:
        raise ReportError(missing_rate_message(missing))
    return converted
