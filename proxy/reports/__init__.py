"""Every aggregate a person asks for, shared by the REST API and the CLI.

Every report counts the same events for the same window ``[start, end)``: grouped by user, team,
model, provider or day from the rollups for whole hours (whole days daily) and raw events for the
partial hours at the edges; about one task, or grouped by task or session, from raw events.
Money stays ``Decimal`` from the database to the JSON string; every ratio is computed in Python.
Unknown dollars are null, never $0 (``totals``). One module per question:

- ``totals``: the sums everything is built from, and blended/sticker/savings definitions;
- ``usage``: totals grouped by user, team, model, provider, task, session or day;
- ``blended``: real vs sticker $/MTok and cache savings per slice;
- ``tasks``: one task's view, the task list, and ROI;
- ``compensation``: annualized spend vs compensation per person, team and org;
- ``distribution``: percentiles, top-N share and Gini across people;
- ``unpriced``: models seen in traffic without a price;
- ``budgets``: each budget's period-to-date spend, limit and reset (and the budget records).
"""

from proxy.reports.blended import BLENDED_GROUPS, Blended, blended
from proxy.reports.budgets import BudgetStatus, budget_status, remove_budget, set_budget
from proxy.reports.compensation import CompensationReport, Window, compensation_report, trailing
from proxy.reports.distribution import METRICS, Distribution, distribution
from proxy.reports.tasks import (
    SORTS,
    RoiReport,
    TaskRow,
    TaskView,
    list_tasks,
    roi_report,
    task_view,
)
from proxy.reports.totals import ReportError, Totals
from proxy.reports.unpriced import Unpriced, unpriced_models
from proxy.reports.usage import GROUPS, Filters, resolve, total_of, usage

__all__ = [
    "BLENDED_GROUPS",
    "GROUPS",
    "METRICS",
    "SORTS",
    "Blended",
    "BudgetStatus",
    "CompensationReport",
    "Distribution",
    "Filters",
    "ReportError",
    "RoiReport",
    "TaskRow",
    "TaskView",
    "Totals",
    "Unpriced",
    "Window",
    "blended",
    "budget_status",
    "compensation_report",
    "distribution",
    "list_tasks",
    "remove_budget",
    "resolve",
    "roi_report",
    "set_budget",
    "task_view",
    "total_of",
    "trailing",
    "unpriced_models",
    "usage",
]
