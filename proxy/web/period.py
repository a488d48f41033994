"""The window a page answers for, from the URL: ``period`` (today, 7d, 30d, mtd, custom with
``start``/``end`` dates, ``end`` inclusive) and the ``team``, ``user`` and ``model`` filters.

Windows start and end on UTC midnights, so a page reads whole days from the rollups; an open
end means "up to now", as in every report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from proxy.reports import Filters, ReportError

PERIODS = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "mtd": "Month to date",
    "custom": "Custom",
}
DEFAULT_PERIOD = "30d"
WHO = ("team", "user", "model")


@dataclass(frozen=True, slots=True)
class View:
    """What a page was asked for: the period, its dates, and the filters."""

    period: str
    start: date
    end: date | None  # inclusive; None: up to now
    who: dict[str, str]

    def filters(self, *, with_model: bool = True) -> Filters:
        end = None if self.end is None else _midnight(self.end + timedelta(days=1))
        model = self.who.get("model") if with_model else None
        return Filters(
            _midnight(self.start), end, self.who.get("user"), self.who.get("team"), model
        )

    def query(self, **changes: str | None) -> str:
        """This view's URL query with ``changes`` (None drops a key): for links and forms."""
        params: dict[str, str | None] = {"period": self.period, **self.who}
        if self.period == "custom":
            params["start"] = self.start.isoformat()
            params["end"] = None if self.end is None else self.end.isoformat()
        params |= changes
        return urlencode({k: v for k, v in params.items() if v})

    @property
    def label(self) -> str:
        last = "now" if self.end is None else self.end.isoformat()
        return f"{self.start.isoformat()} – {last} (UTC)"


def view_of(params: Mapping[str, str], today: date | None = None) -> View:
    """The view the URL ``params`` ask for; a ``ReportError`` for one that makes no sense."""
    today = today or datetime.now(UTC).date()
    period = params.get("period") or DEFAULT_PERIOD
    who = {name: params[name] for name in WHO if params.get(name)}
    if period == "custom":
        start = _day(params.get("start"), "start") or today - timedelta(days=29)
        end = _day(params.get("end"), "end")
        if end is not None and end < start:
            raise ReportError(f"the end {end} is before the start {start}")
        return View(period, start, end, who)
    starts = {
        "today": today,
        "7d": today - timedelta(days=6),
        "30d": today - timedelta(days=29),
        "mtd": today.replace(day=1),
    }
    if period not in starts:
        raise ReportError(f"period must be one of {', '.join(PERIODS)}; got {period!r}")
    return View(period, starts[period], None, who)


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ReportError(f"{name} must be a date (YYYY-MM-DD); got {text!r}") from exc


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
