"""The "People and ROI" dashboard: spend per person and team, spend vs compensation, and ROI.

Pay comes only as /metrics exports it by default (team totals, and who is in which team), so no
panel needs a person's pay. The team filter selects people by their team in the people table.
"""

from __future__ import annotations

from dashboards.grafana import (
    Json,
    Panel,
    Row,
    bars,
    dashboard,
    red_below,
    series,
    stat,
    table,
    target,
    variable,
)
from dashboards.promql import (
    ANNUALIZE,
    COST,
    TASK_VALUE,
    TEAM_PAY,
    TOKENS,
    VALUED_COST,
    blended,
    cache_hit,
    compensation_covered,
    over,
    pay,
    people_teams,
    per_team,
    roi_by_team,
    roi_overall,
    spend_30d_by_person_team,
    spend_to_pay_by_team,
    spend_to_pay_overall,
    valued_share,
)

PEOPLE = 'team=~"$team"'
RANGE = "$__range"
BY_USER = over("increase", COST, PEOPLE, RANGE, "user")  # spend per person in the range


def build() -> Json:
    items: list[Panel | Row] = [
        *_selected_range(),
        *_per_person_and_team(),
        *spend_vs_compensation(),
        *roi(),
    ]
    teams_from = f'{{__name__=~"{TOKENS}|{TEAM_PAY}"}}'
    return dashboard(
        "tokenmeter-people",
        "tokenmeter / People and ROI",
        "Spend per person and team, tokens per person per month, how spend is spread across "
        "people, annualized spend over annual compensation per team and overall, and the ROI "
        "of tasks that have a value.",
        [variable("team", "Team", teams_from)],
        items,
    )


def _selected_range() -> list[Panel | Row]:
    return [
        Row("Selected range"),
        stat(
            "People with usage",
            "People with at least one metered token in the selected range.",
            f"count({over('increase', TOKENS, PEOPLE, RANGE, 'user')} > 0)",
            "none",
        ),
        stat(
            "Spend per person, median",
            "Half the people spent less than this in the selected range.",
            f"quantile(0.5, {BY_USER})",
            "currencyUSD",
            decimals=2,
        ),
        stat(
            "Spend per person, 90th percentile",
            "Nine in ten people spent less than this.",
            f"quantile(0.9, {BY_USER})",
            "currencyUSD",
            decimals=2,
        ),
        stat(
            "Share of spend by top 5 people",
            "How concentrated spend is: the five biggest spenders' share.",
            f"sum(topk(5, {BY_USER})) / sum({BY_USER})",
            "percentunit",
            decimals=1,
        ),
    ]


def _per_person_and_team() -> list[Panel | Row]:
    return [
        Row("Per person and team (last 30 days)"),
        bars(
            "Tokens per person, last 30 days",
            "All five token kinds per person over the last 30 days.",
            over("increase", TOKENS, PEOPLE, "30d", "user"),
            "{{user}}",
            "short",
        ),
        bars(
            "Annualized spend per person",
            "Spend over the last 30 days x 365/30: the figure to set against pay.",
            f"{over('increase', COST, PEOPLE, '30d', 'user, team')} * {ANNUALIZE}",
            "{{user}} ({{team}})",
            "currencyUSD",
        ),
        bars(
            "Annualized spend per team",
            "Spend over the last 30 days x 365/30, by team.",
            f"{over('increase', COST, PEOPLE, '30d', 'team')} * {ANNUALIZE}",
            "{{team}}",
            "currencyUSD",
        ),
        series(
            "Distribution of daily spend across people",
            "Each day's spend per person: median, 90th percentile and the largest.",
            [
                target(f"quantile(0.5, {over('increase', COST, PEOPLE, '1d', 'user')})", "median"),
                target(f"quantile(0.9, {over('increase', COST, PEOPLE, '1d', 'user')})", "p90"),
                target(f"max({over('increase', COST, PEOPLE, '1d', 'user')})", "largest"),
            ],
            "currencyUSD",
        ),
        table(
            "People (selected range)",
            "One row per person and team: spend, tokens and blended $/MTok.",
            [
                ("Spend", "currencyUSD", over("increase", COST, PEOPLE, RANGE, "user, team")),
                ("Tokens", "short", over("increase", TOKENS, PEOPLE, RANGE, "user, team")),
                ("Blended $/MTok", "currencyUSD", blended(PEOPLE, RANGE, "user, team")),
                ("Cache hit rate", "percentunit", cache_hit(PEOPLE, RANGE, "user, team")),
            ],
        ),
    ]


def spend_vs_compensation() -> list[Panel | Row]:
    """The last 30 days' spend x 365/30 over the people table's annual compensation.

    The team filter selects people by their team in the people table here; the traffic's own
    team label only narrows "Compensation covered".
    """
    ratio: Json = {"decimals": 2}
    return [
        Row("Spend vs compensation (last 30 days, annualized)"),
        stat(
            "Spend ÷ compensation, overall",
            "Annualized spend of everyone with a compensation record over the annual"
            " compensation of everyone in the people table (selected teams).",
            spend_to_pay_overall(PEOPLE),
            "percentunit",
            **ratio,
        ),
        stat(
            "Annual compensation, total",
            "Annual compensation in USD of everyone in effect today in the people table.",
            pay(PEOPLE),
            "currencyUSD",
            decimals=0,
        ),
        stat(
            "People with a compensation record",
            "People in effect today in the people table.",
            f"count({people_teams(PEOPLE)})",
            "none",
        ),
        stat(
            "Compensation covered",
            "Share of the last 30 days' spend made by people who have a compensation record:"
            " the spend the ratios here count. Below 100%, import the missing people.",
            compensation_covered(PEOPLE),
            "percentunit",
            decimals=1,
            thresholds=red_below(0.999),
        ),
        bars(
            "Spend ÷ compensation per team",
            "The annualized spend of a team's people over the annual compensation of everyone"
            " in it (people table teams); 0% for a team whose people spent nothing.",
            spend_to_pay_by_team(PEOPLE),
            "{{team}}",
            "percentunit",
            w=24,
            defaults=ratio,
        ),
        table(
            "Teams: spend vs compensation",
            "One row per people-table team: spend over pay, its people's annualized spend, the"
            " team's annual compensation and how many people it has. Per person: the"
            " compensation report of the API (admin token).",
            [
                ("Spend ÷ compensation", "percentunit", spend_to_pay_by_team(PEOPLE)),
                (
                    "Annualized spend",
                    "currencyUSD",
                    f"sum by (team) ({spend_30d_by_person_team(PEOPLE)}) * {ANNUALIZE}",
                ),
                ("Annual compensation", "currencyUSD", pay(PEOPLE, "team")),
                ("People", "none", f"count by (team) ({people_teams(PEOPLE)})"),
            ],
        ),
    ]


def roi() -> list[Panel | Row]:
    """Value of the tasks that have one (``tokenmeter task set``/``import``) over their token
    dollars: the same totals as ``tokenmeter report roi``, per team of the traffic. Per
    repository, branch, pull request or ticket: ``tokenmeter usage --by repo`` and the API
    (no such label on /metrics: it would be unbounded)."""
    return [
        Row("ROI (tasks with a value)"),
        stat(
            "ROI, overall",
            "Value of every task that has one over what its tokens cost, as a multiple"
            " (tokenmeter report roi).",
            roi_overall(PEOPLE),
            "none",
            decimals=2,
        ),
        stat(
            "Value delivered",
            "Value in USD of the tasks that have one (selected teams).",
            f"sum({per_team(TASK_VALUE, PEOPLE)})",
            "currencyUSD",
            decimals=0,
        ),
        stat(
            "Spend on valued tasks",
            "Token dollars of the tasks that have a value.",
            f"sum({per_team(VALUED_COST, PEOPLE)})",
            "currencyUSD",
            decimals=2,
        ),
        stat(
            "Share of spend on valued tasks (30 days)",
            "The last 30 days' dollars on tasks that have a value, over all dollars. Low: enter"
            " values (tokenmeter task import values.csv).",
            valued_share(PEOPLE, "30d"),
            "percentunit",
            decimals=1,
        ),
        bars(
            "ROI per team",
            "Each team's share of task value (a task's value split over the teams that spent"
            " on it, by their dollars) over its dollars on those tasks.",
            roi_by_team(PEOPLE),
            "{{team}}",
            "none",
            defaults={"decimals": 2},
        ),
        series(
            "Value delivered vs token spend",
            "Cumulative value of valued tasks and the token dollars they took.",
            [
                target(f"sum({per_team(TASK_VALUE, PEOPLE)})", "value"),
                target(f"sum({per_team(VALUED_COST, PEOPLE)})", "token spend"),
            ],
            "currencyUSD",
        ),
    ]
