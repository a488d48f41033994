"""Budgets, as values: who a budget covers, its period, its amount, and when a period starts.

A budget caps what one ``user``, one ``team`` or the whole ``org`` may spend per ``day``,
``week`` (Monday to Monday) or ``month``, in USD (``Decimal``). A team or org amount is a
**shared pool**: every request billed to the team (or, for ``org``, every request) counts against
the one amount; it is not a per-person default. A request is checked against every budget that
covers it (its user's, its team's, the org's) and refused if any hard one is spent.
``hard`` budgets refuse requests once spent; ``soft`` ones only warn (``alerts``: the percentages
at which they do, 50/80/100 by default).

Periods are calendar periods in one time zone (``TOKENMETER_BUDGET_TZ``, UTC by default):
``period_bounds`` gives the start and end of the period holding a moment, as aware UTC times,
so every replica and the database agree on which counter a request adds to.

A leaf of pure logic: imports nothing of tokenmeter but ``usage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy.usage import Attribution

DEFAULT_ALERTS = (50, 80, 100)
MAX_AMOUNT = Decimal("100000000")  # within what the money columns hold on SQLite


class BudgetError(ValueError):
    """A budget that cannot be right (negative amount, unknown period, a name on ``org`` …)."""


class Scope(StrEnum):
    USER = "user"
    TEAM = "team"
    ORG = "org"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def adjective(self) -> str:
        return {"day": "daily", "week": "weekly", "month": "monthly"}[self.value]


BudgetKey = tuple[str, str, str]  # (scope, name, period); name '' for org
CounterKey = tuple[str, str, str, datetime]  # BudgetKey + the period's start (UTC)


@dataclass(frozen=True, slots=True)
class Budget:
    """One row of ``budgets``."""

    scope: Scope
    name: str  # '' for org
    period: Period
    amount_usd: Decimal
    hard: bool = True
    alerts: tuple[int, ...] = DEFAULT_ALERTS

    @property
    def key(self) -> BudgetKey:
        return (self.scope.value, self.name, self.period.value)

    def who(self) -> str:
        """``team platform``, ``user alice``, ``org``."""
        return "org" if self.scope is Scope.ORG else f"{self.scope.value} {self.name}"

    def covers(self, user: str | None, team: str | None) -> bool:
        if self.scope is Scope.ORG:
            return True
        return self.name == (user if self.scope is Scope.USER else team)


def make_budget(
    scope: str,
    name: str | None,
    period: str,
    amount_usd: Decimal | str,
    *,
    hard: bool = True,
    alerts: tuple[int, ...] | None = None,
) -> Budget:
    """A validated ``Budget``; ``BudgetError`` says what is wrong."""
    try:
        kind, every = Scope(scope), Period(period)
    except ValueError:
        raise BudgetError(
            f"scope must be user, team or org and period day, week or month; "
            f"got {scope!r}, {period!r}"
        ) from None
    if kind is Scope.ORG and name:
        raise BudgetError("an org budget has no name")
    if kind is not Scope.ORG and not name:
        raise BudgetError(f"a {kind.value} budget needs the {kind.value}'s name")
    amount = Decimal(amount_usd)
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise BudgetError(f"the amount must be more than $0 and at most ${MAX_AMOUNT:,}")
    levels = tuple(sorted(set(alerts if alerts is not None else DEFAULT_ALERTS)))
    if any(level <= 0 or level > 1000 for level in levels):
        raise BudgetError("alert thresholds are percentages between 1 and 1000")
    return Budget(kind, name or "", every, amount, hard, levels)


def applicable(budgets: list[Budget], who: Attribution) -> list[Budget]:
    """The budgets a request billed to ``who`` counts against."""
    return [budget for budget in budgets if budget.covers(who.user, who.team)]


def time_zone(name: str) -> tzinfo:
    """``TOKENMETER_BUDGET_TZ`` as a time zone; ``BudgetError`` if it names none."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetError(f"unknown time zone {name!r}") from None


def period_bounds(period: Period, at: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """The [start, end) of the ``period`` holding ``at``, in ``tz``'s calendar, as UTC."""
    local = at.astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if period is Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return _utc(start, tz), _utc(end, tz)


def _utc(wall: datetime, tz: tzinfo) -> datetime:
    return wall.replace(tzinfo=tz).astimezone(UTC)


def reset_text(end: datetime, tz: tzinfo) -> str:
    """``2026-12-01 00:00 UTC``: when a period ends, on the budget's clock."""
    local = end.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or 'UTC'}"


def money(amount: Decimal) -> str:
    """``$2,000.00``; a budget below a cent keeps its digits (``$0.0005``, up to 6 places)."""
    exponent = amount.normalize().as_tuple().exponent
    places = min(6, max(2, -exponent if isinstance(exponent, int) else 2))
    return f"${amount:,.{places}f}"


def limit_message(budget: Budget, end: datetime, tz: tzinfo) -> str:
    """What a refused request is told: ``spend limit reached (team platform, monthly
    $2,000.00; resets 2026-12-01 00:00 UTC)``."""
    return (
        f"spend limit reached ({budget.who()}, {budget.period.adjective} "
        f"{money(budget.amount_usd)}; resets {reset_text(end, tz)})"
    )
