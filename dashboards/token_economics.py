"""The "Token economics" dashboard: what the tokens cost, by model, team and person.

Spend, blended vs sticker $/MTok, cache hit rate and input:output for the selected range and
over time. Every usage counter carries the provider, model, team and user labels it filters on.
"""

from __future__ import annotations

from dashboards.grafana import (
    Json,
    Panel,
    Row,
    bars,
    dashboard,
    red_above,
    series,
    stat,
    table,
    target,
    variable,
)
from dashboards.promql import (
    COST,
    SEAT_COST,
    SEAT_QUOTA,
    TOKENS,
    blended,
    cache_hit,
    io_ratio,
    over,
    sticker,
)

ECON = 'provider=~"$provider", model=~"$model", team=~"$team", user=~"$user"'
RANGE = "$__range"
RATE = "$__rate_interval"


def build() -> Json:
    items: list[Panel | Row] = [
        *_selected_range(),
        *_spend_over_time(),
        *_unit_economics_by_model(),
        *_teams_and_people(),
        *_seats(),
        *_budgets(),
    ]
    variables = [
        variable("provider", "Provider", TOKENS),
        variable("model", "Model", TOKENS),
        variable("team", "Team", TOKENS),
        variable("user", "Person", TOKENS),
    ]
    return dashboard(
        "tokenmeter-economics",
        "tokenmeter / Token economics",
        "What the tokens cost: spend, blended vs sticker $/MTok, cache hit rate and input:output "
        "by model, team and person.",
        variables,
        items,
    )


def _selected_range() -> list[Panel | Row]:
    return [
        Row("Selected range"),
        stat(
            "Spend",
            "Dollars metered in the selected range.",
            over("increase", COST, ECON, RANGE),
            "currencyUSD",
            decimals=2,
            w=4,
        ),
        stat(
            "Tokens",
            "All five token kinds metered in the selected range.",
            over("increase", TOKENS, ECON, RANGE),
            "short",
            w=4,
        ),
        stat(
            "Blended $/MTok",
            "Dollars per million tokens of all kinds: what a token really cost.",
            blended(ECON, RANGE),
            "currencyUSD",
            decimals=3,
            w=3,
        ),
        stat(
            "Sticker $/MTok",
            "The same tokens at list input/output prices with no caching.",
            sticker(ECON, RANGE),
            "currencyUSD",
            decimals=3,
            w=3,
        ),
        stat(
            "Cache hit rate",
            "cache_read / (input + cache writes + cache_read).",
            cache_hit(ECON, RANGE),
            "percentunit",
            decimals=1,
            w=4,
        ),
        stat(
            "Input : output",
            "Input tokens of every kind per output token.",
            io_ratio(ECON, RANGE),
            "none",
            decimals=1,
            w=3,
        ),
        stat(
            "Unpriced requests",
            "Requests for models with no known price: their cost is unknown, never counted as $0.",
            over(
                "increase",
                "tokenmeter_unpriced_requests_total",
                'provider=~"$provider", model=~"$model"',
                RANGE,
            ),
            "short",
            noValue="0",
            thresholds=red_above(0),
            w=3,
        ),
    ]


def _spend_over_time() -> list[Panel | Row]:
    return [
        Row("Spend over time"),
        series(
            "Spend per hour by team",
            "Dollars per hour, by team.",
            [target(f"{over('rate', COST, ECON, RATE, 'team')} * 3600", "{{team}}")],
            "currencyUSD",
            stacked=True,
        ),
        series(
            "Spend per hour by model",
            "Dollars per hour, by model.",
            [target(f"{over('rate', COST, ECON, RATE, 'model')} * 3600", "{{model}}")],
            "currencyUSD",
            stacked=True,
        ),
        series(
            "Spend per hour by token kind",
            "Where the dollars go: output, input, cache writes and reads, web search.",
            [target(f"{over('rate', COST, ECON, RATE, 'kind')} * 3600", "{{kind}}")],
            "currencyUSD",
            stacked=True,
        ),
        series(
            "Tokens per second by kind",
            "Token throughput by kind.",
            [target(over("rate", TOKENS, ECON, RATE, "kind"), "{{kind}}")],
            "short",
            stacked=True,
        ),
    ]


def _unit_economics_by_model() -> list[Panel | Row]:
    return [
        Row("Unit economics by model"),
        series(
            "Blended vs sticker $/MTok by model",
            "Blended: what a million tokens really cost. Sticker: the same tokens at list"
            " input/output prices with no caching.",
            [
                target(blended(ECON, RATE, "model", "rate"), "{{model}} blended"),
                target(sticker(ECON, RATE, "model", "rate"), "{{model}} sticker"),
            ],
            "currencyUSD",
            w=8,
        ),
        series(
            "Cache hit rate by model",
            "cache_read / every input kind, by model.",
            [target(cache_hit(ECON, RATE, "model", "rate"), "{{model}}")],
            "percentunit",
            w=8,
        ),
        series(
            "Input : output ratio by model",
            "Input tokens of every kind per output token, by model.",
            [target(io_ratio(ECON, RATE, "model", "rate"), "{{model}}")],
            "none",
            w=8,
        ),
        table(
            "By model (selected range)",
            "One row per model: spend, tokens and unit economics.",
            [
                ("Spend", "currencyUSD", over("increase", COST, ECON, RANGE, "model")),
                ("Tokens", "short", over("increase", TOKENS, ECON, RANGE, "model")),
                ("Blended $/MTok", "currencyUSD", blended(ECON, RANGE, "model")),
                ("Sticker $/MTok", "currencyUSD", sticker(ECON, RANGE, "model")),
                ("Cache hit rate", "percentunit", cache_hit(ECON, RANGE, "model")),
                ("Input : output", "none", io_ratio(ECON, RANGE, "model")),
            ],
        ),
    ]


def _teams_and_people() -> list[Panel | Row]:
    return [
        Row("Teams and people (selected range)"),
        bars(
            "Spend by team",
            "Dollars per team in the selected range.",
            over("increase", COST, ECON, RANGE, "team"),
            "{{team}}",
            "currencyUSD",
            w=8,
        ),
        bars(
            "Top 10 spenders",
            "The ten people who spent most in the selected range.",
            f"topk(10, {over('increase', COST, ECON, RANGE, 'user, team')})",
            "{{user}} ({{team}})",
            "currencyUSD",
            w=8,
        ),
        bars(
            "Blended $/MTok by team",
            "Dollars per million tokens, by team.",
            blended(ECON, RANGE, "team"),
            "{{team}}",
            "currencyUSD",
            w=8,
        ),
        bars(
            "Cache hit rate by team",
            "cache_read / every input kind, by team.",
            cache_hit(ECON, RANGE, "team"),
            "{{team}}",
            "percentunit",
            w=6,
        ),
        bars(
            "Cache hit rate by person",
            "cache_read / every input kind, by person.",
            cache_hit(ECON, RANGE, "user"),
            "{{user}}",
            "percentunit",
            w=6,
        ),
        bars(
            "Input : output by team",
            "Input tokens of every kind per output token, by team.",
            io_ratio(ECON, RANGE, "team"),
            "{{team}}",
            "none",
            w=6,
        ),
        bars(
            "Input : output by person",
            "Input tokens of every kind per output token, by person.",
            io_ratio(ECON, RANGE, "user"),
            "{{user}}",
            "none",
            w=6,
        ),
    ]


_USED = "max by (scope, name, period) (tokenmeter_budget_used_ratio)"
_MONTHLY = 'max by (scope, name, period) (tokenmeter_budget_used_ratio{period="month"})'
# Seconds left in the current UTC month: where a monthly budget's burn-down is projected to.
_MONTH_LEFT = (
    "scalar((days_in_month() - day_of_month()) * 86400"
    " + (23 - hour()) * 3600 + (59 - minute()) * 60)"
)


def _seats() -> list[Panel | Row]:
    """Subscription seats: what their traffic would have cost on the API, beside (never added
    to) the spend above, and how close each seat holder runs to the plan's limits."""
    return [
        Row("Subscription seats (selected range)"),
        stat(
            "API-equivalent of seat traffic",
            "What the claude.ai-login (seat) traffic in the selected range would have cost at"
            " list price. Its paid dollars are 0 per token (the seat price is paid instead), so"
            " this is never part of Spend.",
            over("increase", SEAT_COST, ECON, RANGE),
            "currencyUSD",
            noValue="0",
        ),
        bars(
            "API-equivalent by seat holder",
            "Per person, the list price of their seat traffic in the selected range (compare"
            " with the seat's price: tokenmeter report seats).",
            over("increase", SEAT_COST, ECON, RANGE, "user"),
            "{{user}}",
            "currencyUSD",
            w=9,
        ),
        series(
            "Plan window used, by seat holder",
            "The latest share of each plan window (5 h, 7 d, ...) the seat holder has used, from"
            " the unified rate-limit headers of their responses: 100% is the plan's limit.",
            [
                target(
                    f'max by (user, window) ({SEAT_QUOTA}{{user=~"$user"}})', "{{user}} {{window}}"
                )
            ],
            "percentunit",
            w=9,
        ),
    ]


def _budgets() -> list[Panel | Row]:
    return [
        Row("Budgets"),
        series(
            "Budget used",
            "Period-to-date spend over each budget's amount (tokenmeter budget set): 100% is"
            " spent; a hard budget then refuses requests until its period resets.",
            [target(_USED, "{{scope}} {{name}} ({{period}})")],
            "percentunit",
            w=12,
        ),
        series(
            "Monthly budgets: burn-down and linear forecast to month end",
            "Used share of each monthly budget, and where the last 6 hours' pace puts it at the"
            " end of the month (UTC).",
            [
                target(_MONTHLY, "{{scope}} {{name}} used"),
                target(
                    f"predict_linear(({_MONTHLY})[6h:], {_MONTH_LEFT})",
                    "{{scope}} {{name}} forecast at month end",
                ),
            ],
            "percentunit",
            w=12,
        ),
        table(
            "Over 80% of a budget",
            "Every budget at 80% or more of its period's amount, highest first.",
            [("Used", "percentunit", f"{_USED} >= 0.8")],
        ),
    ]
