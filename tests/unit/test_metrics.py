"""The Prometheus collectors: what one metered exchange adds to each series."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from prometheus_client import CollectorRegistry

from proxy.metrics import Metrics
from proxy.usage import Attribution, Cost, Usage, UsageEvent
from tests.factories import make_event


def event(cost: Cost | None, **usage: int) -> UsageEvent:
    return make_event(
        model="claude-opus-4-8",
        usage=Usage(**usage),
        complete=True,
        user="alice",
        team="platform",
        task="t-1",
        duration_ms=1500.0,
        upstream_headers_ms=300.0,
        first_token_ms=450.0,
        cost=cost,
        priced=cost is not None,
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
    # Usage children are cached per label values; pay rows are replaced wholesale.
    metrics = Metrics(CollectorRegistry())
    metrics.observe(event(COST, input=11, output=6))
    metrics.set_compensation([("alice", "platform", Decimal(100_000))])
    metrics.set_compensation([("bob", "platform", Decimal(90_000))])
    metrics.observe(event(COST, input=11, output=6))
    metrics.observe(event(None, input=1))
    assert sample(metrics, "tokenmeter_tokens_total", kind="input", **WHO) == 23
    assert sample(metrics, "tokenmeter_cost_usd_total", kind="input", **WHO) == 0.00011
    info = "tokenmeter_person_team_info"
    assert sample(metrics, info, user="alice", team="platform") is None
    assert sample(metrics, info, user="bob", team="platform") == 1
    assert sample(metrics, "tokenmeter_team_annual_compensation_usd", team="platform") == 90_000
    model = {"provider": "anthropic", "model": "claude-opus-4-8"}
    assert sample(metrics, "tokenmeter_unpriced_requests_total", **model) == 1


PAY_ROWS = [
    ("alice", "platform", Decimal("200000.50")),
    ("bob", "platform", Decimal(150_000)),
    ("dave", "search", Decimal(180_000)),
]


def exposition(metrics: Metrics) -> str:
    return metrics.exposition().decode()


def test_pay_is_exported_as_team_totals_and_membership_never_per_person_by_default() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_compensation(PAY_ROWS)
    team_pay = "tokenmeter_team_annual_compensation_usd"
    assert sample(metrics, team_pay, team="platform") == 350_000.5
    assert sample(metrics, team_pay, team="search") == 180_000
    assert sample(metrics, "tokenmeter_person_team_info", user="dave", team="search") == 1
    text = exposition(metrics)
    assert "tokenmeter_annual_compensation_usd" not in text
    assert "200000.5" not in text  # alice's pay appears nowhere
    assert "180000" in text  # dave is alone in search: his team total is his pay (README says so)


def test_personal_pay_exports_each_persons_pay_when_asked_for() -> None:
    metrics = Metrics(CollectorRegistry(), personal_pay=True)
    metrics.set_compensation(PAY_ROWS)
    pay = "tokenmeter_annual_compensation_usd"
    assert sample(metrics, pay, user="alice", team="platform") == 200_000.5
    assert sample(metrics, pay, user="dave", team="search") == 180_000
    assert sample(metrics, "tokenmeter_team_annual_compensation_usd", team="platform") == 350_000.5


def test_per_user_off_exports_team_pay_totals_only() -> None:
    metrics = Metrics(CollectorRegistry(), per_user=False, personal_pay=True)
    metrics.set_compensation(PAY_ROWS)
    text = exposition(metrics)
    assert "alice" not in text
    assert "tokenmeter_person_team_info" not in text
    assert sample(metrics, "tokenmeter_team_annual_compensation_usd", team="platform") == 350_000.5


def test_user_and_team_labels_past_the_bound_are_counted_as_other() -> None:
    metrics = Metrics(CollectorRegistry(), max_users=3, max_teams=2)
    metrics.set_compensation([("zoe", "platform", Decimal(1))])  # people with pay come first
    for n in range(10):
        metrics.observe(event_of(f"user-{n}", f"team-{n % 4}"))
    metrics.observe(event_of("zoe", "team-3"))
    metrics.observe(event_of(None, None))  # unattributed: empty labels, never "other"
    tokens = {
        (s.labels["user"], s.labels["team"]): s.value
        for family in metrics.registry.collect()
        if family.name == "tokenmeter_tokens"
        for s in family.samples
        if s.name == "tokenmeter_tokens_total"
    }
    assert tokens == {
        ("user-0", "team-0"): 5,
        ("user-1", "other"): 5,
        ("other", "team-0"): 10,
        ("other", "other"): 30,
        ("zoe", "other"): 5,
        ("", ""): 5,
    }
    assert sum(tokens.values()) == 12 * 5
    for n in range(10_000):  # names past the bound cost no memory
        metrics.observe(event_of(f"flood-{n}", f"flood-{n}"))
    assert len(metrics.users.labels) == 1 + 3
    assert len(metrics.teams.labels) == 1 + 2


def event_of(user: str | None, team: str | None) -> UsageEvent:
    return replace(event(None, input=5), attribution=Attribution(user=user, team=team))


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
