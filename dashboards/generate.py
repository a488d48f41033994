"""Writes tokenmeter's Grafana dashboards (dashboards/*.json) from one readable description.

Why code and not hand-edited JSON: three dashboards share one filter set, one panel shape and
one vocabulary of PromQL (blended $/MTok, cache hit rate, input:output), and a change to any of
them must land everywhere. Plain Python writing plain JSON keeps that without a dependency.

Run ``python dashboards/generate.py`` after editing; ``--check`` exits 1 when the committed JSON
differs from what this script writes (tests/test_deploy.py runs it). Every ``expr`` written here
is evaluated against a real Prometheus scraping a real proxy by
tests/integration/test_prometheus.py, so a typo in a metric or label fails CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39  # Grafana 11
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
Json = dict[str, Any]

TOKENS = "tokenmeter_tokens_total"
COST = "tokenmeter_cost_usd_total"
STICKER = "tokenmeter_sticker_cost_usd_total"
UNPRICED_TOKENS = "tokenmeter_unpriced_tokens_total"
REQUESTS = "tokenmeter_requests_total"
# Pay as /metrics exports it by default: team totals, and who is in which team without an
# amount (proxy/paymetrics.py); never a person's pay. Their team is the person's team in the
# people table, not the team the traffic was tagged with. Every replica exports the same
# values: take the max across replicas, never the sum.
TEAM_PAY = "tokenmeter_team_annual_compensation_usd"
PERSON_TEAM = "tokenmeter_person_team_info"

# The Token economics filters; every usage counter carries these labels.
ECON = 'provider=~"$provider", model=~"$model", team=~"$team", user=~"$user"'
HEALTH = 'provider=~"$provider", instance=~"$instance"'
PEOPLE = 'team=~"$team"'
ANNUALIZE = "365 / 30"  # 30 days of spend, annualized


# ---------------------------------------------------------------- PromQL vocabulary


def sel(metric: str, filters: str, extra: str = "") -> str:
    """``metric{filters, extra}``, or the bare metric when there is nothing to match."""
    inner = ", ".join(part for part in (filters, extra) if part)
    return f"{metric}{{{inner}}}" if inner else metric


def over(fn: str, metric: str, filters: str, window: str, by: str = "", extra: str = "") -> str:
    """``sum [by (..)] (fn(metric{..}[window]))``."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({fn}({sel(metric, filters, extra)}[{window}]))"


def priced_tokens(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """Tokens of requests with a known price (all five kinds): every $/MTok's denominator, so
    requests without a price neither add dollars nor pull the rate down."""
    tokens = over(fn, TOKENS, filters, window, by)
    return f"(({tokens} - {over(fn, UNPRICED_TOKENS, filters, window, by)}) or {tokens})"


def blended(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """Dollars per million priced tokens, all five kinds in the denominator (README)."""
    cost = over(fn, COST, filters, window, by)
    return f"{cost} / {priced_tokens(filters, window, by, fn)} * 1e6"


def sticker(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """What the same priced tokens cost per million at list prices with no caching."""
    cost = over(fn, STICKER, filters, window, by)
    return f"{cost} / {priced_tokens(filters, window, by, fn)} * 1e6"


def cache_hit(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """cache_read / (input + cache_write_5m + cache_write_1h + cache_read)."""
    hits = over(fn, TOKENS, filters, window, by, 'kind="cache_read"')
    inputs = over(fn, TOKENS, filters, window, by, 'kind!="output"')
    return f"{hits} / {inputs}"


def io_ratio(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """Every input kind over output tokens."""
    inputs = over(fn, TOKENS, filters, window, by, 'kind!="output"')
    outputs = over(fn, TOKENS, filters, window, by, 'kind="output"')
    return f"{inputs} / {outputs}"


def spend_30d_by_user(filters: str = "") -> str:
    """Each person's spend over the last 30 days, whatever team their traffic was tagged with."""
    return over("increase", COST, filters, "30d", "user")


def people_teams() -> str:
    """One series per person with a compensation record, labelled (user, people-table team);
    ``topk`` keeps one team per person while replicas disagree for a scrape after a move."""
    return f"topk by (user) (1, group by (user, team) ({sel(PERSON_TEAM, PEOPLE)}))"


def spend_30d_by_person_team() -> str:
    """``spend_30d_by_user`` for people with a compensation record, labelled with their people
    team: a join on ``user`` only, since the counter's own team is the traffic's."""
    return f"{spend_30d_by_user()} * on (user) group_left (team) {people_teams()}"


def pay(by: str = "") -> str:
    """Annual compensation in USD of the selected people-table teams, per team or in all."""
    teams = f"max by (team) ({sel(TEAM_PAY, PEOPLE)})"
    return teams if by == "team" else f"sum({teams})"


def spend_to_pay_by_team() -> str:
    """Its people's annualized spend / everyone's pay in the team; 0 for a team with no spend."""
    spend = f"(sum by (team) ({spend_30d_by_person_team()}) or 0 * {pay('team')})"
    return f"{spend} * {ANNUALIZE} / {pay('team')}"


def spend_to_pay_overall() -> str:
    """The same for everyone with a compensation record (in the selected teams)."""
    spend = f"(sum({spend_30d_by_person_team()}) or vector(0))"
    return f"{spend} * {ANNUALIZE} / {pay()}"


def compensation_covered() -> str:
    """Share of the last 30 days' spend made by people who have a compensation record."""
    known = f"sum({spend_30d_by_user(PEOPLE)} and on (user) {PERSON_TEAM})"
    return f"({known} or vector(0)) / {over('increase', COST, PEOPLE, '30d')}"


def quantile(q: float, metric: str, filters: str) -> str:
    """A latency quantile across replicas from a histogram's buckets."""
    buckets = over("rate", f"{metric}_bucket", filters, "$__rate_interval", "le")
    return f"histogram_quantile({q}, {buckets})"


# ---------------------------------------------------------------- Grafana JSON shapes


def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "") -> Json:
    out: Json = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto"}
    out |= {"instant": instant, "range": not instant, "editorMode": "code"}
    if fmt:
        out["format"] = fmt
    return out


@dataclass
class Panel:
    """One panel: what it shows (kind, targets, unit) and how big it is (w x h grid cells)."""

    kind: str
    title: str
    description: str
    targets: list[Json]
    unit: str = "short"
    w: int = 12
    h: int = 8
    options: Json = field(default_factory=dict)
    defaults: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    extra: Json = field(default_factory=dict)

    def to_json(self, panel_id: int, pos: Json) -> Json:
        targets = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(self.targets)]
        defaults = {"unit": self.unit, **self.defaults}
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": pos,
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
            **self.extra,
        }


@dataclass
class Row:
    title: str


def stat(
    title: str, description: str, expr: str, unit: str, *, w: int = 6, **defaults: Any
) -> Panel:
    """A single number; ``defaults`` go to fieldConfig.defaults (decimals, noValue, ...)."""
    options: Json = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    options |= {"colorMode": "value", "graphMode": "none", "textMode": "auto"}
    targets = [target(expr, instant=True)]
    return Panel("stat", title, description, targets, unit, w, 4, options, defaults)


def series(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Panel:
    stacked = kw.pop("stacked", False)
    custom: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False}
    if stacked:
        custom |= {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40}
    options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}}
    options["tooltip"] = {"mode": "multi", "sort": "desc"}
    return Panel(
        "timeseries",
        title,
        description,
        targets,
        unit,
        options=options,
        defaults={"custom": custom},
        **kw,
    )


def bars(title: str, description: str, expr: str, legend: str, unit: str, **kw: Any) -> Panel:
    options = {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    options["reduceOptions"] = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    targets = [target(expr, legend, instant=True)]
    return Panel("bargauge", title, description, targets, unit, options=options, **kw)


def table(title: str, description: str, columns: list[tuple[str, str, str]]) -> Panel:
    """One row per label set, one column per (name, unit, expr), merged on the labels."""
    targets = [target(expr, instant=True, fmt="table") for _, _, expr in columns]
    rename = {f"Value #{chr(ord('A') + i)}": name for i, (name, _, _) in enumerate(columns)}
    organize = {"excludeByName": {"Time": True}, "renameByName": rename}
    merge = [{"id": "merge", "options": {}}, {"id": "organize", "options": organize}]
    return Panel(
        "table",
        title,
        description,
        targets,
        w=24,
        h=9,
        options={"showHeader": True, "sortBy": [{"displayName": columns[0][0], "desc": True}]},
        defaults={"custom": {"align": "auto"}},
        overrides=[_unit_of(name, unit) for name, unit, _ in columns],
        extra={"transformations": merge},
    )


def _unit_of(column: str, unit: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [{"id": "unit", "value": unit}],
    }


def layout(items: list[Panel | Row]) -> list[Json]:
    """Place panels left to right, wrapping at 24 columns; a Row starts a new collapsible band."""
    out: list[Json] = []
    x = y = row_h = 0
    for number, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y, x, row_h = y + row_h, 0, 0
            pos = {"h": 1, "w": 24, "x": 0, "y": y}
            out.append(
                {
                    "id": number,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": pos,
                    "panels": [],
                }
            )
            y += 1
            continue
        if x + item.w > 24:
            y, x, row_h = y + row_h, 0, 0
        out.append(item.to_json(number, {"h": item.h, "w": item.w, "x": x, "y": y}))
        x, row_h = x + item.w, max(row_h, item.h)
    return out


def variable(name: str, label: str, metric: str, *, include_all: bool = True) -> Json:
    query = f"label_values({metric}, {name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "includeAll": include_all,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "hide": 0,
    }


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "refresh": 1,
        "regex": "",
        "hide": 0,
        "includeAll": False,
        "multi": False,
    }


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], items: list[Any]
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tokenmeter"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["tokenmeter"],
                "asDropdown": True,
                "title": "tokenmeter",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout(items),
    }


# ---------------------------------------------------------------- the three dashboards


def token_economics() -> Json:
    rng = "$__range"
    rate_ = "$__rate_interval"
    items: list[Panel | Row] = [
        Row("Selected range"),
        stat(
            "Spend",
            "Dollars metered in the selected range.",
            over("increase", COST, ECON, rng),
            "currencyUSD",
            decimals=2,
            w=4,
        ),
        stat(
            "Tokens",
            "All five token kinds metered in the selected range.",
            over("increase", TOKENS, ECON, rng),
            "short",
            w=4,
        ),
        stat(
            "Blended $/MTok",
            "Dollars per million tokens of all kinds: what a token really cost.",
            blended(ECON, rng),
            "currencyUSD",
            decimals=3,
            w=3,
        ),
        stat(
            "Sticker $/MTok",
            "The same tokens at list input/output prices with no caching.",
            sticker(ECON, rng),
            "currencyUSD",
            decimals=3,
            w=3,
        ),
        stat(
            "Cache hit rate",
            "cache_read / (input + cache writes + cache_read).",
            cache_hit(ECON, rng),
            "percentunit",
            decimals=1,
            w=4,
        ),
        stat(
            "Input : output",
            "Input tokens of every kind per output token.",
            io_ratio(ECON, rng),
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
                rng,
            ),
            "short",
            noValue="0",
            thresholds=_red_above(0),
            w=3,
        ),
        Row("Spend over time"),
        series(
            "Spend per hour by team",
            "Dollars per hour, by team.",
            [target(f"{over('rate', COST, ECON, rate_, 'team')} * 3600", "{{team}}")],
            "currencyUSD",
            stacked=True,
        ),
        series(
            "Spend per hour by model",
            "Dollars per hour, by model.",
            [target(f"{over('rate', COST, ECON, rate_, 'model')} * 3600", "{{model}}")],
            "currencyUSD",
            stacked=True,
        ),
        series(
            "Spend per hour by token kind",
            "Where the dollars go: output, input, cache writes and reads, web search.",
            [target(f"{over('rate', COST, ECON, rate_, 'kind')} * 3600", "{{kind}}")],
            "currencyUSD",
            stacked=True,
        ),
        series(
            "Tokens per second by kind",
            "Token throughput by kind.",
            [target(over("rate", TOKENS, ECON, rate_, "kind"), "{{kind}}")],
            "short",
            stacked=True,
        ),
        Row("Unit economics by model"),
        series(
            "Blended vs sticker $/MTok by model",
            "Blended: what a million tokens really cost. Sticker: the same tokens at list"
            " input/output prices with no caching.",
            [
                target(blended(ECON, rate_, "model", "rate"), "{{model}} blended"),
                target(sticker(ECON, rate_, "model", "rate"), "{{model}} sticker"),
            ],
            "currencyUSD",
            w=8,
        ),
        series(
            "Cache hit rate by model",
            "cache_read / every input kind, by model.",
            [target(cache_hit(ECON, rate_, "model", "rate"), "{{model}}")],
            "percentunit",
            w=8,
        ),
        series(
            "Input : output ratio by model",
            "Input tokens of every kind per output token, by model.",
            [target(io_ratio(ECON, rate_, "model", "rate"), "{{model}}")],
            "none",
            w=8,
        ),
        table(
            "By model (selected range)",
            "One row per model: spend, tokens and unit economics.",
            [
                ("Spend", "currencyUSD", over("increase", COST, ECON, rng, "model")),
                ("Tokens", "short", over("increase", TOKENS, ECON, rng, "model")),
                ("Blended $/MTok", "currencyUSD", blended(ECON, rng, "model")),
                ("Sticker $/MTok", "currencyUSD", sticker(ECON, rng, "model")),
                ("Cache hit rate", "percentunit", cache_hit(ECON, rng, "model")),
                ("Input : output", "none", io_ratio(ECON, rng, "model")),
            ],
        ),
        Row("Teams and people (selected range)"),
        bars(
            "Spend by team",
            "Dollars per team in the selected range.",
            over("increase", COST, ECON, rng, "team"),
            "{{team}}",
            "currencyUSD",
            w=8,
        ),
        bars(
            "Top 10 spenders",
            "The ten people who spent most in the selected range.",
            f"topk(10, {over('increase', COST, ECON, rng, 'user, team')})",
            "{{user}} ({{team}})",
            "currencyUSD",
            w=8,
        ),
        bars(
            "Blended $/MTok by team",
            "Dollars per million tokens, by team.",
            blended(ECON, rng, "team"),
            "{{team}}",
            "currencyUSD",
            w=8,
        ),
        bars(
            "Cache hit rate by team",
            "cache_read / every input kind, by team.",
            cache_hit(ECON, rng, "team"),
            "{{team}}",
            "percentunit",
            w=6,
        ),
        bars(
            "Cache hit rate by person",
            "cache_read / every input kind, by person.",
            cache_hit(ECON, rng, "user"),
            "{{user}}",
            "percentunit",
            w=6,
        ),
        bars(
            "Input : output by team",
            "Input tokens of every kind per output token, by team.",
            io_ratio(ECON, rng, "team"),
            "{{team}}",
            "none",
            w=6,
        ),
        bars(
            "Input : output by person",
            "Input tokens of every kind per output token, by person.",
            io_ratio(ECON, rng, "user"),
            "{{user}}",
            "none",
            w=6,
        ),
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


def _red_below(value: float) -> Json:
    steps = [{"color": "red", "value": None}, {"color": "green", "value": value}]
    return {"mode": "absolute", "steps": steps}


def _red_above(value: float) -> Json:
    steps = [{"color": "green", "value": None}, {"color": "red", "value": value + 1e-9}]
    return {"mode": "absolute", "steps": steps}


def proxy_health() -> Json:
    r = "$__rate_interval"
    errors = sel(REQUESTS, HEALTH, 'status!="ok"')
    items: list[Panel | Row] = [
        Row("Traffic"),
        stat(
            "Replicas up",
            "Proxy replicas Prometheus scrapes successfully (job tokenmeter).",
            'sum(up{job="tokenmeter"})',
            "none",
        ),
        stat(
            "Requests per second",
            "Exchanges forwarded per second, all replicas.",
            over("rate", REQUESTS, HEALTH, r),
            "reqps",
            decimals=2,
        ),
        stat(
            "Failed exchanges",
            "Share of exchanges that did not end ok (any status but ok).",
            f"sum(rate({errors}[{r}])) / {over('rate', REQUESTS, HEALTH, r)}",
            "percentunit",
            decimals=1,
            noValue="0",
            thresholds=_red_above(0.05),
        ),
        stat(
            "Dropped events (range)",
            "Usage events neither the database nor the spool took. Should be 0.",
            over(
                "increase",
                "tokenmeter_recorder_dropped_events_total",
                'instance=~"$instance"',
                "$__range",
            ),
            "short",
            noValue="0",
            thresholds=_red_above(0),
        ),
        series(
            "Requests per second by status",
            "ok, upstream_error, client_disconnected, upstream_unreachable, incomplete, rejected.",
            [target(over("rate", REQUESTS, HEALTH, r, "status"), "{{status}}")],
            "reqps",
            stacked=True,
        ),
        series(
            "Errors per second by HTTP code",
            "Every exchange that did not end ok, by the HTTP status the client saw and how it"
            " ended.",
            [target(f"sum by (code, status) (rate({errors}[{r}]))", "{{code}} {{status}}")],
            "reqps",
        ),
        series(
            "Requests per second by model",
            "Exchanges per second, by model.",
            [target(over("rate", REQUESTS, HEALTH, r, "model"), "{{model}}")],
            "reqps",
            stacked=True,
        ),
        series(
            "Unpriced requests per second by model",
            "Models with usage but no price.",
            [
                target(
                    over("rate", "tokenmeter_unpriced_requests_total", HEALTH, r, "model"),
                    "{{model}}",
                )
            ],
            "reqps",
        ),
        Row("Latency"),
        _quantiles(
            "Upstream time to response headers",
            "Request start to the upstream's response headers.",
            "tokenmeter_upstream_headers_seconds",
            (0.5, 0.9, 0.99),
        ),
        _quantiles(
            "Time to first token (streams)",
            "Request start to the first streamed chunk.",
            "tokenmeter_time_to_first_token_seconds",
            (0.5, 0.9, 0.99),
        ),
        _quantiles(
            "Whole exchange",
            "Request start to the last byte sent to the client.",
            "tokenmeter_exchange_seconds",
            (0.5, 0.9, 0.99),
        ),
        Panel(
            "heatmap",
            "Whole exchange, distribution",
            "How many exchanges took how long, per time slice.",
            [
                target(
                    over("increase", "tokenmeter_exchange_seconds_bucket", HEALTH, r, "le"),
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            "s",
            w=24,
            options={
                "calculate": False,
                "yAxis": {"unit": "s"},
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            },
        ),
        Row("Recorder and spool"),
        series(
            "Recorder queue depth",
            "Events waiting to be written to the database, per replica.",
            [
                target(
                    'max by (instance) (tokenmeter_recorder_queue_depth{instance=~"$instance"})',
                    "{{instance}}",
                )
            ],
            "short",
            w=8,
        ),
        series(
            "Events per database write",
            "Recorder batch size, p50 and p99.",
            [
                target(
                    quantile(q, "tokenmeter_recorder_batch_size", 'instance=~"$instance"'),
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "short",
            w=8,
        ),
        series(
            "Database write time",
            "Time to write one batch (insert + rollup, one transaction), p50 and p99.",
            [
                target(
                    quantile(q, "tokenmeter_recorder_flush_seconds", 'instance=~"$instance"'),
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
            w=8,
        ),
        series(
            "Spooled, replayed, quarantined and dropped events per second",
            "Spooled: the database failed or hung and events wait in the local spool. Replayed:"
            " spooled events written later. Quarantined: refused by the database for what they"
            " hold, kept for `tokenmeter db quarantine`. Dropped: lost.",
            [
                target(
                    over(
                        "rate",
                        f"tokenmeter_recorder_{name}_events_total",
                        'instance=~"$instance"',
                        r,
                    ),
                    name,
                )
                for name in ("spooled", "replayed", "quarantined", "dropped")
            ],
            "short",
            w=24,
        ),
    ]
    variables = [
        variable("provider", "Provider", REQUESTS),
        variable("instance", "Replica", REQUESTS),
    ]
    return dashboard(
        "tokenmeter-health",
        "tokenmeter / Proxy health",
        "Is the proxy healthy: request rate, errors by code, latency, the recorder and its spool.",
        variables,
        items,
    )


def _quantiles(title: str, description: str, metric: str, qs: tuple[float, ...]) -> Panel:
    targets = [target(quantile(q, metric, HEALTH), f"p{round(q * 100)}") for q in qs]
    return series(title, f"{description} p50, p90 and p99 across replicas.", targets, "s", w=8)


def people_roi() -> Json:
    rng = "$__range"
    per_year = ANNUALIZE
    by_user = over("increase", COST, PEOPLE, rng, "user")
    items: list[Panel | Row] = [
        Row("Selected range"),
        stat(
            "People with usage",
            "People with at least one metered token in the selected range.",
            f"count({over('increase', TOKENS, PEOPLE, rng, 'user')} > 0)",
            "none",
        ),
        stat(
            "Spend per person, median",
            "Half the people spent less than this in the selected range.",
            f"quantile(0.5, {by_user})",
            "currencyUSD",
            decimals=2,
        ),
        stat(
            "Spend per person, 90th percentile",
            "Nine in ten people spent less than this.",
            f"quantile(0.9, {by_user})",
            "currencyUSD",
            decimals=2,
        ),
        stat(
            "Share of spend by top 5 people",
            "How concentrated spend is: the five biggest spenders' share.",
            f"sum(topk(5, {by_user})) / sum({by_user})",
            "percentunit",
            decimals=1,
        ),
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
            f"{over('increase', COST, PEOPLE, '30d', 'user, team')} * {per_year}",
            "{{user}} ({{team}})",
            "currencyUSD",
        ),
        bars(
            "Annualized spend per team",
            "Spend over the last 30 days x 365/30, by team.",
            f"{over('increase', COST, PEOPLE, '30d', 'team')} * {per_year}",
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
                ("Spend", "currencyUSD", over("increase", COST, PEOPLE, rng, "user, team")),
                ("Tokens", "short", over("increase", TOKENS, PEOPLE, rng, "user, team")),
                ("Blended $/MTok", "currencyUSD", blended(PEOPLE, rng, "user, team")),
                ("Cache hit rate", "percentunit", cache_hit(PEOPLE, rng, "user, team")),
            ],
        ),
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
            spend_to_pay_overall(),
            "percentunit",
            **ratio,
        ),
        stat(
            "Annual compensation, total",
            "Annual compensation in USD of everyone in effect today in the people table.",
            pay(),
            "currencyUSD",
            decimals=0,
        ),
        stat(
            "People with a compensation record",
            "People in effect today in the people table.",
            f"count({people_teams()})",
            "none",
        ),
        stat(
            "Compensation covered",
            "Share of the last 30 days' spend made by people who have a compensation record:"
            " the spend the ratios here count. Below 100%, import the missing people.",
            compensation_covered(),
            "percentunit",
            decimals=1,
            thresholds=_red_below(0.999),
        ),
        bars(
            "Spend ÷ compensation per team",
            "The annualized spend of a team's people over the annual compensation of everyone"
            " in it (people table teams); 0% for a team whose people spent nothing.",
            spend_to_pay_by_team(),
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
                ("Spend ÷ compensation", "percentunit", spend_to_pay_by_team()),
                (
                    "Annualized spend",
                    "currencyUSD",
                    f"sum by (team) ({spend_30d_by_person_team()}) * {ANNUALIZE}",
                ),
                ("Annual compensation", "currencyUSD", pay("team")),
                ("People", "none", f"count by (team) ({people_teams()})"),
            ],
        ),
    ]


DASHBOARDS: dict[str, Callable[[], Json]] = {
    "token-economics.json": token_economics,
    "proxy-health.json": proxy_health,
    "people-roi.json": people_roi,
}


def render(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a JSON file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = HERE / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    for name in stale:
        print(f"dashboards/{name} is stale: run python dashboards/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
