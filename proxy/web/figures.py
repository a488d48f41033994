"""What each page shows, gathered from ``proxy.reports`` (never SQL of its own): the same
functions and the same figures as the REST API, so a page and the API agree to the cent.

Each ``*_page`` returns the template's context; its ``rows`` are what the CSV download holds
(the page's table, the same columns the API's CSV has).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import reports
from proxy.pricing import Pricer
from proxy.reports import Filters, Totals
from proxy.web.period import View

OTHERS = "other"
STACK_MAX = 8  # series in a stacked chart; the rest are summed as "other"
PROVIDERS = ("anthropic", "openai")
MAX_DAYS = 3660
MENUS_KEPT = 64  # periods whose menus are kept  # the longest day axis a chart draws


async def overview_page(engine: AsyncEngine, view: View) -> dict[str, Any]:
    filters = await reports.resolve(engine, view.filters())
    points = await reports.over_time(engine, ("model", "team"), filters)  # one read
    days = reports.per_day(points)  # what usage by day answers
    total = reports.total_of(days)
    by_model, by_team = reports.by_key(points, 0), reports.by_key(points, 1)
    rows = [{"day": day, **t.as_json()} for day, t in days]
    axis = day_axis(filters)
    return {
        "filters": filters,
        "total": total.as_json(),
        "rows": rows,
        "csv_rows": [*rows, {"day": "(total)", **total.as_json()}],
        "charts": {
            "spend_by_model": _stacked(by_model, axis),
            "spend_by_team": _stacked(by_team, axis),
            "mix": _mix(days, axis),
        },
    }


class Menus:
    """The teams, users and models seen in a period: the filter menus. Kept for a minute per
    period, so paging through a view reads them once (a name new this minute shows next)."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._kept: dict[tuple[Any, Any], tuple[float, dict[str, list[str]]]] = {}

    async def of(self, engine: AsyncEngine, view: View) -> dict[str, list[str]]:
        window = replace(view.filters(), user=None, team=None, model=None)
        key = (window.start, window.end)
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.ttl_s:
            return kept[1]
        found = {}
        for name in ("team", "user", "model"):
            found[name] = [key for key, _ in await reports.usage(engine, name, window)]
        if len(self._kept) > MENUS_KEPT:
            self._kept.clear()
        self._kept[key] = (time.monotonic(), found)
        return found


def _stacked(points: list[tuple[str, str, Totals]], days: list[str]) -> dict[str, Any]:
    """Dollars per day per key, the biggest ``STACK_MAX`` keys kept and the rest summed."""
    spend: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for day, key, totals in points:
        spend[key][day] = totals.cost_usd
    ranked = sorted(spend, key=lambda k: (-sum(spend[k].values()), k))
    kept, rest = ranked[:STACK_MAX], ranked[STACK_MAX:]
    if rest:
        spend[OTHERS] = {
            day: sum((spend[k].get(day, Decimal(0)) for k in rest), Decimal(0)) for day in days
        }
        kept.append(OTHERS)
    series = [{"label": k, "data": [float(spend[k].get(d, 0)) for d in days]} for k in kept]
    return {"labels": days, "series": series}


def day_axis(filters: Filters) -> list[str]:
    """Every UTC day of the window (up to today when it is open), so quiet days show as gaps."""
    today = datetime.now(UTC).date()
    last = today if filters.end is None else (filters.end - timedelta(microseconds=1)).date()
    first = (filters.start or datetime.now(UTC)).date()
    count = max(0, min((last - first).days + 1, MAX_DAYS))
    return [(first + timedelta(days=n)).isoformat() for n in range(count)]


def _mix(days: list[tuple[str, Totals]], axis: list[str]) -> dict[str, Any]:
    found = dict(days)
    ratio = [_number(found[d].input_output_ratio) if d in found else None for d in axis]
    hits = [_number(found[d].cache_hit_rate, 100) if d in found else None for d in axis]
    return {"labels": axis, "ratio": ratio, "hit_rate": hits}


def _number(value: Decimal | None, scale: int = 1) -> float | None:
    return None if value is None else float(value * scale)


async def tasks_page(engine: AsyncEngine, view: View, limit: int = 25) -> dict[str, Any]:
    filters = await reports.resolve(engine, view.filters(with_model=False))
    costliest, roi = await reports.tasks_and_roi(engine, filters, limit)
    repos = top_repos(await reports.usage(engine, "repo", filters))
    return {
        "filters": filters,
        "costliest": [row.as_json() for row in costliest],
        "roi": roi.as_json(),
        "repos": repos,
        "csv_rows": {
            "costliest": [row.as_json() for row in costliest],
            "roi": roi.as_json()["rows"],
            "repos": repos,
        },
    }


TOP_REPOS = 10
_SHARE = Decimal("0.000001")


def top_repos(by_repo: list[tuple[str, Totals]], top: int = TOP_REPOS) -> list[dict[str, Any]]:
    """The ``top`` repositories by spend (``usage`` by repo's order), the rest summed as one
    "other" row, then ``unattributed`` (spend with no work context): each with its share of
    the whole spend."""
    named = [(key, t) for key, t in by_repo if key != reports.UNATTRIBUTED]
    rows = named[:top]
    if len(named) > top:
        rest = named[top:]
        rows.append((f"{OTHERS} ({len(rest)} repositories)", reports.total_of(rest)))
    rows += [(key, t) for key, t in by_repo if key == reports.UNATTRIBUTED]
    spend = reports.total_of(by_repo).cost_usd
    return [
        {
            "repo": key,
            "share_of_spend": str((t.cost_usd / spend).quantize(_SHARE)) if spend else None,
            **t.as_json(),
        }
        for key, t in rows
    ]


async def task_page(engine: AsyncEngine, task_id: str) -> dict[str, Any] | None:
    view = await reports.task_view(engine, task_id)
    if view is None:
        return None
    hours = await reports.task_hours(engine, task_id)
    rows = [{"hour": hour, **t.as_json()} for hour, t in hours]
    chart = {
        "labels": [hour for hour, _ in hours],
        "cost": [float(t.cost_usd) for _, t in hours],
        "requests": [t.requests for _, t in hours],
    }
    return {"task": view.as_json(), "rows": rows, "csv_rows": rows, "charts": {"timeline": chart}}


async def people_page(
    engine: AsyncEngine, view: View, usd_per: dict[str, Decimal]
) -> dict[str, Any]:
    filters = view.filters(with_model=False)
    start = filters.start or datetime.now(UTC)
    window = reports.Window(start, filters.end or datetime.now(UTC))
    by_user = await reports.usage(engine, "user", Filters(window.start, window.end))  # once
    report = await reports.compensation_report(engine, window, usd_per, by_user)
    spread = await reports.distribution(engine, window, "cost_usd", [1, 5, 10], by_user)
    data = report.as_json()
    return {
        "window": window,
        "report": data,
        "spread": spread.as_json(),
        "csv_rows": report.rows(),
        "charts": {"lorenz": lorenz(list(spread.values.values()))},
    }


def lorenz(values: list[Fraction]) -> dict[str, Any]:
    """The Lorenz curve of per-person spend: the share of people (poorest first) against their
    share of the total, both in percent, starting at (0, 0)."""
    ordered = sorted(values)
    total = sum(ordered, Fraction(0))
    points = [{"x": 0.0, "y": 0.0}]
    running = Fraction(0)
    for i, value in enumerate(ordered, start=1):
        running += value
        share = running / total if total else Fraction(i, len(ordered))
        points.append({"x": float(Fraction(i, len(ordered)) * 100), "y": float(share * 100)})
    return {"points": points if ordered else []}


async def models_page(engine: AsyncEngine, view: View, pricer: Pricer) -> dict[str, Any]:
    filters = await reports.resolve(engine, view.filters())
    blended = await reports.blended(engine, "model", filters)
    now = datetime.now(UTC)
    cards = {model: _card(pricer, model, now) for model, _ in blended.groups}
    rows = blended.rows()
    return {
        "filters": filters,
        "rows": rows,
        "total": blended.total.as_json(),
        "cards": cards,
        "csv_rows": [*rows, {"model": "(total)", **blended.total.as_json()}],
    }


def _card(pricer: Pricer, model: str, now: datetime) -> dict[str, Any] | None:
    """The rates in effect today for ``model`` (from whichever provider lists it), or None."""
    for provider in PROVIDERS:
        card = pricer.rate_card(provider, model, now)
        if card is not None:
            rates = [
                {"kind": kind, "rate": rate.describe(), "source": rate.source}
                for kind, rate in card.rates.items()
            ]
            return {"provider": provider, "on": card.on.isoformat(), "rates": rates}
    return None


async def budgets_page(engine: AsyncEngine, tz: tzinfo, now: datetime) -> dict[str, Any]:
    """Every budget in its current period, the fullest first (``reports.budget_status``: the
    counters the caps enforce, as ``/api/v1/budgets`` and ``tokenmeter budget status``)."""
    found = await reports.budget_status(engine, tz, now)
    found.sort(key=lambda s: (-s.spent / s.budget.amount_usd, s.budget.key))
    rows = [status.as_json() for status in found]
    for row, status in zip(rows, found, strict=True):
        row["bar_percent"] = str(min(status.percent, Decimal(100)))
        row["over"] = status.over
    csv_rows = [{k: v for k, v in row.items() if k not in _PAGE_ONLY} for row in rows]
    return {"rows": rows, "csv_rows": csv_rows, "over": sum(1 for s in found if s.over)}


_PAGE_ONLY = ("bar_percent", "over", "alerts")


async def reconcile_page(engine: AsyncEngine, view: View, prices: Path | None) -> dict[str, Any]:
    """Proxy vs the providers' own reports over the view's whole UTC days
    (``reports.reconcile``, as ``/api/v1/reports/reconcile`` and ``tokenmeter report
    reconcile``); the team, user and model filters do not apply (the providers' reports have
    no people)."""
    window = view.filters(with_model=False)
    end = window.end or datetime.now(UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    ) + timedelta(days=1)
    start = window.start or end - timedelta(days=30)
    found = await reports.reconcile(engine, start, end, await reports.company_prices(prices))
    report = found.as_json()
    fetched = any(any(v for v in used.values()) for used in found.snapshots.values())
    return {
        "report": report,
        "rows": report["rows"],
        "total": found.total.as_json(),
        "fetched": fetched,
        "csv_rows": found.flat_rows(),
    }
