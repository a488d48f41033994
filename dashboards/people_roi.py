"""The "People and ROI" dashboard: spend per person and team, and spend vs compensation.

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
    TEAM_PAY,
    TOKENS,
    blended,
    cache_hit,
    compensation_covered,
    over,
    pay,
    people_teams,
    spend_30d_by_person_team,
    spend_to_pay_by_team,
    spend_to_pay_overall,
)

PEOPLE = 'team=~"$team"'
RANGE = "$__range"
BY_USER = over("increase", COST, PEOPLE, RANGE, "user")  # spend per person in the range


def build() -> Json:
    items: list[Panel | Row] = [
        *_selected_range(),
        *_per_person_and_team(),
        *spend_vs_compensation(),
    ]
    teams_from = f'{{__name__=~"{TOKENS}|{TEAM_PAY}"}}'
    return dashboard(
        "tokenmeter-people",
        "tokenmeter / People and ROI",
        "Spend per person and team, tokens per person per month, how spend is spread across "
        "people, and annualized spend over annual compensation per team and overall.",
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
