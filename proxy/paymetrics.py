"""Pay on ``/metrics``: team totals by default, each person's pay only when asked for.

``PayCollector`` holds the (user, team, USD) rows last loaded from the people table (see
``people.gauge_rows``) and turns them into series at scrape time:

- ``tokenmeter_team_annual_compensation_usd{team}``: the annual compensation of everyone in the
  team (people-table team), always;
- ``tokenmeter_person_team_info{user, team} 1``: who has a compensation record and in which
  team, without the amount, so spend can be joined to people-table teams; only with per-user
  metrics (otherwise there is no user to join on);
- ``tokenmeter_annual_compensation_usd{user, team}``: each person's pay, only with
  ``personal=True`` (``TOKENMETER_METRICS_PERSONAL_PAY=true``, which needs a metrics token).

It is a custom collector, never a prometheus_client ``Gauge``: in multiprocess mode a gauge's
values live in per-worker files that outlive ``clear()``, so a person who changed team kept both
series. Here every scrape answers from the rows this process last loaded, one series per person.
Every value is the same on every replica: aggregate with ``max by (team)``, never ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.reloading import Reloading

TEAM_PAY = "tokenmeter_team_annual_compensation_usd"
PERSON_TEAM = "tokenmeter_person_team_info"
PERSONAL_PAY = "tokenmeter_annual_compensation_usd"

Row = tuple[str, str, Decimal]


class PayCollector(Reloading["Row"], Collector):
    """The pay series from the rows of ``set_rows`` (user, people-table team, annual USD);
    ``due`` says when to load them again."""

    def __init__(self, *, personal: bool, per_user: bool, max_age_s: float = 5.0) -> None:
        super().__init__(max_age_s)
        self._personal = personal
        self._per_user = per_user

    def collect(self) -> Iterator[Metric]:
        rows = self.rows
        yield _team_totals(rows)
        if self._per_user:
            info = GaugeMetricFamily(
                PERSON_TEAM,
                "1 for each person with a compensation record in effect today, labelled with "
                "their team in the people table (no amount).",
                labels=("user", "team"),
            )
            for user, team, _ in rows:
                info.add_metric((user, team), 1)
            yield info
        if self._personal and self._per_user:
            pay = GaugeMetricFamily(
                PERSONAL_PAY,
                "Annual compensation in USD in effect today, per person (opt-in).",
                labels=("user", "team"),
            )
            for user, team, usd in rows:
                pay.add_metric((user, team), float(usd))
            yield pay


def _team_totals(rows: Iterable[Row]) -> GaugeMetricFamily:
    totals: dict[str, Decimal] = {}
    for _, team, usd in rows:
        totals[team] = totals.get(team, Decimal(0)) + usd
    family = GaugeMetricFamily(
        TEAM_PAY,
        "Annual compensation in USD in effect today of everyone in the team (people table).",
        labels=("team",),
    )
    for team, usd in sorted(totals.items()):
        family.add_metric((team,), float(usd))  # exact sums live in the API's reports
    return family
