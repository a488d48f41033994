"""ROI on ``/metrics``: the value of valued tasks and what their tokens cost, per team.

``RoiCollector`` holds the (team, value USD, valued-task cost USD) rows last loaded from the
database (``reports.value_by_team``) and turns them into two counters at scrape time:

- ``tokenmeter_task_value_usd_total{team}``: the value (``tokenmeter task set``/``import``) of
  every task that has one, each task's value split over the teams that spent on it in
  proportion to their cost;
- ``tokenmeter_valued_task_cost_usd_total{team}``: the token dollars of those tasks.

Both are totals read from the database, so a value is counted once, when it is set or changed,
however many replicas serve ``/metrics``: every replica shows the same number (aggregate with
``max by (team)``, never ``sum``), and a restart loses nothing. They only grow while values and
spend only grow; lowering a task's value lowers them (Prometheus reads that as a reset).
Never a task, repository or branch label: teams only, bounded like every team label.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.reloading import Reloading

TASK_VALUE = "tokenmeter_task_value_usd"
VALUED_COST = "tokenmeter_valued_task_cost_usd"

Row = tuple[str, Decimal, Decimal]


class RoiCollector(Reloading["Row"], Collector):
    """The ROI counters from the rows of ``set_rows`` (team label, value USD, valued-task cost
    USD); ``due`` says when to load them again."""

    def __init__(self, max_age_s: float = 15.0) -> None:
        super().__init__(max_age_s)

    def collect(self) -> Iterator[Metric]:
        value = CounterMetricFamily(
            TASK_VALUE,
            "Value in USD of the tasks that have one, split over teams by their cost "
            "(the same on every replica: max by team).",
            labels=("team",),
        )
        cost = CounterMetricFamily(
            VALUED_COST,
            "Token dollars spent on tasks that have a value (the same on every replica).",
            labels=("team",),
        )
        for team, usd, spent in self.rows:
            value.add_metric((team,), float(usd))
            cost.add_metric((team,), float(spent))
        yield value
        yield cost
