"""The Prometheus collectors: what one metered exchange adds to each series."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import CollectorRegistry

from proxy.metrics import Metrics
from proxy.usage import Attribution, Cost, ResponseFacts, Status, Usage, UsageEvent


def event(cost: Cost | None, **usage: int) -> UsageEvent:
    facts = ResponseFacts(usage=Usage(**usage), model="claude-opus-4-8", complete=True)
    return UsageEvent(
        provider="anthropic",
        method="POST",
        path="/v1/messages",
        started_at=datetime(2026, 11, 26, tzinfo=UTC),
        attribution=Attribution(user="alice", team="platform", task="t-1", session="s-1"),
        facts=facts,
        status=Status.OK,
        http_status=200,
        stream=True,
        duration_ms=1500.0,
        upstream_headers_ms=300.0,
        first_token_ms=450.0,
        cost=cost,
    )


COST = Cost(
    total=Decimal("0.000205"),
    by_kind={"input": Decimal("0.000055"), "output": Decimal("0.00015")},
    sticker=Decimal("0.000205"),
    price_version="test",
)
WHO = {"provider": "anthropic", "model": "claude-opus-4-8", "user": "alice", "team": "platform"}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_tokens_dollars_and_sticker_are_counted_per_person() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.observe(event(COST, input=11, output=6))
    metrics.observe(event(COST, input=11, output=6))
    assert sample(metrics, "tokenmeter_tokens_total", kind="input", **WHO) == 22
    assert sample(metrics, "tokenmeter_tokens_total", kind="output", **WHO) == 12
    assert sample(metrics, "tokenmeter_tokens_total", kind="cache_read", **WHO) is None
    assert sample(metrics, "tokenmeter_cost_usd_total", kind="output", **WHO) == 0.0003
    assert sample(metrics, "tokenmeter_sticker_cost_usd_total", **WHO) == 0.00041
    labels = {"provider": "anthropic", "model": "claude-opus-4-8", "status": "ok", "code": "200"}
    assert sample(metrics, "tokenmeter_requests_total", **labels) == 2


def test_per_user_off_exports_empty_user_and_team_and_never_a_task() -> None:
    metrics = Metrics(CollectorRegistry(), per_user=False)
    metrics.observe(event(COST, input=11, output=6))
    anonymous = {**WHO, "user": "", "team": ""}
    assert sample(metrics, "tokenmeter_tokens_total", kind="input", **anonymous) == 11
    exposition = "\n".join(
        f"{s.name}{s.labels}" for family in metrics.registry.collect() for s in family.samples
    )
    assert "alice" not in exposition
    assert "t-1" not in exposition
    assert "s-1" not in exposition


def test_unpriced_exchange_counts_as_unpriced_never_as_zero_dollars() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.observe(event(None, input=11, output=6))
    model = {"provider": "anthropic", "model": "claude-opus-4-8"}
    assert sample(metrics, "tokenmeter_unpriced_requests_total", **model) == 1
    assert sample(metrics, "tokenmeter_cost_usd_total", kind="input", **WHO) is None
    assert sample(metrics, "tokenmeter_tokens_total", kind="input", **WHO) == 11


def test_compensation_resets_leave_the_usage_series_counting() -> None:
    # Usage children are cached per label values; only the compensation gauge is ever cleared.
    metrics = Metrics(CollectorRegistry())
    metrics.observe(event(COST, input=11, output=6))
    metrics.set_compensation([("alice", "platform", Decimal(100_000))])
    metrics.set_compensation([("bob", "platform", Decimal(90_000))])
    metrics.observe(event(COST, input=11, output=6))
    metrics.observe(event(None, input=1))
    assert sample(metrics, "tokenmeter_tokens_total", kind="input", **WHO) == 23
    assert sample(metrics, "tokenmeter_cost_usd_total", kind="input", **WHO) == 0.00011
    people = "tokenmeter_annual_compensation_usd"
    assert sample(metrics, people, user="alice", team="platform") is None
    assert sample(metrics, people, user="bob", team="platform") == 90_000
    model = {"provider": "anthropic", "model": "claude-opus-4-8"}
    assert sample(metrics, "tokenmeter_unpriced_requests_total", **model) == 1


def test_latencies_land_in_their_histograms_in_seconds() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.observe(event(COST, input=1))
    metrics.observe_added_time("anthropic", 0.0004)
    provider = {"provider": "anthropic"}
    assert sample(metrics, "tokenmeter_exchange_seconds_sum", **provider) == 1.5
    assert sample(metrics, "tokenmeter_upstream_headers_seconds_sum", **provider) == 0.3
    assert sample(metrics, "tokenmeter_time_to_first_token_seconds_sum", **provider) == 0.45
    assert sample(metrics, "tokenmeter_proxy_added_seconds_bucket", le="0.0005", **provider) == 1


def test_recorder_reports_queue_batches_spool_quarantine_and_drops() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_queue_depth(7)
    metrics.observe_batch(250, 0.02)
    metrics.add_spooled(3)
    metrics.add_replayed(3)
    metrics.add_dropped(1)
    metrics.add_quarantined(2)
    metrics.add_spool_errors(4)
    assert sample(metrics, "tokenmeter_recorder_quarantined_events_total") == 2
    assert sample(metrics, "tokenmeter_recorder_spool_write_errors_total") == 4
    assert sample(metrics, "tokenmeter_recorder_queue_depth") == 7
    assert sample(metrics, "tokenmeter_recorder_batch_size_sum") == 250
    assert sample(metrics, "tokenmeter_recorder_flush_seconds_count") == 1
    assert sample(metrics, "tokenmeter_recorder_spooled_events_total") == 3
    assert sample(metrics, "tokenmeter_recorder_replayed_events_total") == 3
    assert sample(metrics, "tokenmeter_recorder_dropped_events_total") == 1
