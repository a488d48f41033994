"""The "Proxy health" dashboard: request rate, errors by code, latency, the recorder, its spool."""

from __future__ import annotations

from dashboards.grafana import (
    Json,
    Panel,
    Row,
    dashboard,
    red_above,
    series,
    stat,
    target,
    variable,
)
from dashboards.promql import REQUESTS, over, quantile, sel

HEALTH = 'provider=~"$provider", instance=~"$instance"'
RATE = "$__rate_interval"
ERRORS = sel(REQUESTS, HEALTH, 'status!="ok"')  # every exchange that did not end ok


def build() -> Json:
    items: list[Panel | Row] = [
        *_traffic(),
        *_latency(),
        *_recorder(),
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


def _traffic() -> list[Panel | Row]:
    return [
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
            over("rate", REQUESTS, HEALTH, RATE),
            "reqps",
            decimals=2,
        ),
        stat(
            "Failed exchanges",
            "Share of exchanges that did not end ok (any status but ok).",
            f"sum(rate({ERRORS}[{RATE}])) / {over('rate', REQUESTS, HEALTH, RATE)}",
            "percentunit",
            decimals=1,
            noValue="0",
            thresholds=red_above(0.05),
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
            thresholds=red_above(0),
        ),
        series(
            "Requests per second by status",
            "ok, upstream_error, client_disconnected, upstream_unreachable, incomplete, rejected.",
            [target(over("rate", REQUESTS, HEALTH, RATE, "status"), "{{status}}")],
            "reqps",
            stacked=True,
        ),
        series(
            "Errors per second by HTTP code",
            "Every exchange that did not end ok, by the HTTP status the client saw and how it"
            " ended.",
            [target(f"sum by (code, status) (rate({ERRORS}[{RATE}]))", "{{code}} {{status}}")],
            "reqps",
        ),
        series(
            "Requests per second by model",
            "Exchanges per second, by model.",
            [target(over("rate", REQUESTS, HEALTH, RATE, "model"), "{{model}}")],
            "reqps",
            stacked=True,
        ),
        series(
            "Unpriced requests per second by model",
            "Models with usage but no price.",
            [
                target(
                    over("rate", "tokenmeter_unpriced_requests_total", HEALTH, RATE, "model"),
                    "{{model}}",
                )
            ],
            "reqps",
        ),
    ]


def _latency() -> list[Panel | Row]:
    return [
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
                    over("increase", "tokenmeter_exchange_seconds_bucket", HEALTH, RATE, "le"),
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
    ]


def _recorder() -> list[Panel | Row]:
    return [
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
                        RATE,
                    ),
                    name,
                )
                for name in ("spooled", "replayed", "quarantined", "dropped")
            ],
            "short",
            w=24,
        ),
    ]


def _quantiles(title: str, description: str, metric: str, qs: tuple[float, ...]) -> Panel:
    targets = [target(quantile(q, metric, HEALTH), f"p{round(q * 100)}") for q in qs]
    return series(title, f"{description} p50, p90 and p99 across replicas.", targets, "s", w=8)
