"""Every aggregate a person asks for, shared by the REST API and the CLI.

Every report counts the same events for the same window ``[start, end)``: grouped by user, team,
model, provider or day from the rollups for whole hours (whole days daily) and raw events for the
partial hours at the edges; grouped by task (lists, ROI) from the task rollups for whole months
and days (``task_source``); grouped by work unit (repository, branch, pull request, ticket) from
the session rollup for whole days (``session_source``); about one task, or grouped by session,
from raw events.
Money stays ``Decimal`` from the database to the JSON string; every ratio is computed in Python.
Unknown dollars are null, never $0 (``totals``). One module per question:

- ``totals``: the sums everything is built from, and blended/sticker/savings definitions;
- ``usage``: totals grouped by user, team, model, provider, task, session, day or work unit
  (repository, branch, pull request, ticket: joined from ``session_context``);
- ``blended``: real vs sticker $/MTok and cache savings per slice;
- ``window``: the window and filters of a question, and an event's task (``work_task``);
- ``tasks``: one task's view, the task list, and ROI (``task_source``: where they read);
- ``compensation``: annualized spend vs compensation per person, team and org;
- ``distribution``: percentiles, top-N share and Gini across people;
- ``series``: totals per day and model or team, and one task's hours (the dashboard's charts);
- ``unpriced``: models seen in traffic without a price;
- ``reconcile``: the proxy's tokens and dollars beside the provider's own usage and cost reports.
- ``work``: one task or work unit (pull request, repository, branch, ticket) seen whole;
- ``sessions``: one session's cost and its person's month, for Claude Code's status line.
- ``seats``: per subscription seat and month, API-equivalent value vs seat price (break-even).
- ``budgets``: each budget's period-to-date spend, limit and reset (and the budget records).
"""

from proxy.reports.blended import BLENDED_GROUPS, Blended, blended
from proxy.reports.budgets import BudgetStatus, budget_status, remove_budget, set_budget
from proxy.reports.compensation import CompensationReport, Window, compensation_report, trailing
from proxy.reports.distribution import METRICS, Distribution, distribution
from proxy.reports.reconcile import PROVIDERS as RECONCILED_PROVIDERS
from proxy.reports.reconcile import Reconciliation, company_prices, reconcile
from proxy.reports.seats import SeatReport, seat_report
from proxy.reports.series import SERIES_GROUPS, Point, by_key, over_time, per_day, task_hours
from proxy.reports.sessions import session_spend
from proxy.reports.tasks import (
    SORTS,
    RoiReport,
    TaskRow,
    TaskView,
    list_tasks,
    roi_report,
    task_view,
    tasks_and_roi,
    value_by_team,
    value_by_team_quietly,
)
from proxy.reports.totals import ReportError, Totals
from proxy.reports.unpriced import Unpriced, unpriced_models
from proxy.reports.usage import GROUPS, UNATTRIBUTED, WORK_GROUPS, resolve, total_of, usage
from proxy.reports.window import Filters
from proxy.reports.work import Slice, work_view

__all__ = [
    "BLENDED_GROUPS",
    "GROUPS",
    "METRICS",
    "SERIES_GROUPS",
    "SORTS",
    "Blended",
    "BudgetStatus",
    "CompensationReport",
    "Distribution",
    "Filters",
    "Reconciliation",
    "Point",
    "ReportError",
    "RoiReport",
    "SeatReport",
    "TaskRow",
    "TaskView",
    "UNATTRIBUTED",
    "WORK_GROUPS",
    "Slice",
    "Totals",
    "Unpriced",
    "Window",
    "blended",
    "budget_status",
    "by_key",
    "company_prices",
    "compensation_report",
    "distribution",
    "list_tasks",
    "over_time",
    "per_day",
    "remove_budget",
    "resolve",
    "reconcile",
    "RECONCILED_PROVIDERS",
    "roi_report",
    "seat_report",
    "session_spend",
    "set_budget",
    "task_hours",
    "task_view",
    "tasks_and_roi",
    "total_of",
    "trailing",
    "unpriced_models",
    "usage",
    "value_by_team",
    "value_by_team_quietly",
    "work_view",
]
