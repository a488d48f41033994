"""Every Prometheus collector of tokenmeter, on an injected registry.

``Metrics(registry)`` builds the collectors; ``observe(event)`` counts one finished exchange; the
recorder reports its backlog, batches, spool, quarantine and drops through the
``RecorderMetrics`` methods.
Labels (README, "Metrics"): tokens and dollars by ``provider, model, kind, user, team`` (user and
team are exported empty when ``per_user`` is off, for huge orgs); never a task or session label
(unbounded cardinality). User and team values are client-controlled, so each is bounded: the
first ``max_users`` (``max_teams``) distinct values seen by this process keep their name, later
ones are counted as ``"other"`` (the database still has every name). People with a compensation
record are admitted first, so the pay joins of the dashboards find them. Pay itself is exported
by ``proxy.paymetrics.PayCollector`` (team totals by default, per person only when asked for).

The names are a contract with ``deploy/prometheus/rules/`` and ``dashboards/*.json``, which
``tests/integration/test_prometheus.py`` checks against a real Prometheus scraping a real proxy:
rename a collector here and that test names every panel and rule that broke.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.paymetrics import PayCollector, Row
from proxy.roimetrics import RoiCollector
from proxy.roimetrics import Row as RoiRow
from proxy.usage import COST_KINDS, TOKEN_KINDS, UsageEvent

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The proxy's own work per request is sub-millisecond to a few ms; finer buckets than upstream's.
_ADDED_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
_COST_KINDS = frozenset(COST_KINDS)  # a set: tested per priced kind on the hot path
_USAGE_LABELS = ("provider", "model", "kind", "user", "team")
OVERFLOW = "other"  # the label of every user (team) past the bound
# tokenmeter_requests_refused_total{reason}: bad_path (request target), bad_attribution
# (x-tokenmeter-* or the /u/ /t/ prefix), body_too_large, incomplete_body (the client hung up
# or was cut before its body was complete), headers_too_large, bad_request (not HTTP); the key
# gate's (proxy/credentials.py): key_required, unknown_key, bad_key, revoked_key, expired_key,
# no_company_key; single sign-on's (proxy/oidc.py): bad_token, expired_token, unknown_signing_key,
# idp_unreachable.
REFUSAL_REASONS = (
    "bad_path",
    "bad_attribution",
    "body_too_large",
    "incomplete_body",
    "headers_too_large",
    "bad_request",
    "key_required",
    "unknown_key",
    "bad_key",
    "revoked_key",
    "expired_key",
    "no_company_key",
    "bad_token",
    "expired_token",
    "unknown_signing_key",
    "idp_unreachable",
    "spend_limit",
)
# tokenmeter_identity_overrides_total{source}: a header or path prefix named another user or team
# than the authenticated identity (source key or key_map), and was ignored.
IDENTITY_SOURCES = ("key", "oidc", "key_map")
TIMEOUT_PHASES = ("head", "body", "keepalive")

_M = TypeVar("_M", bound=MetricWrapperBase)
_Children = dict[tuple[str, ...], _M]


def _child(metric: _M, children: _Children[_M], labels: tuple[str, ...]) -> _M:
    """``metric.labels(*labels)``, remembered in ``children``: on the hot path a dict lookup
    instead of prometheus_client's checks, ``str()`` of every value and lock. Only for
    collectors that are never ``clear()``-ed or ``remove()``-d (that would orphan the cached
    child): the compensation gauge is not cached. In multiprocess mode the children are the
    same objects ``labels`` returns, so their values still go to this worker's files."""
    child = children.get(labels)
    if child is None:
        child = children[labels] = metric.labels(*labels)
    return child


class BoundedLabel:
    """Label values admitted first-come up to ``limit``; every later value maps to ``"other"``.

    ``labels`` is the hot path's dict (value -> label); values past the bound are not stored,
    so a client sending a million names costs no memory."""

    def __init__(self, limit: int) -> None:
        self.labels: dict[str, str] = {"": ""}
        self._room = limit

    def admit(self, value: str) -> str:
        """The label for ``value``, admitting it while there is room."""
        label = self.labels.get(value)
        if label is not None:
            return label
        if self._room <= 0:
            return OVERFLOW
        self._room -= 1
        self.labels[value] = value
        return value


class Metrics:
    """The collectors, created on ``registry`` (never the global one)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        per_user: bool = True,
        personal_pay: bool = False,
        max_users: int = 1000,
        max_teams: int = 1000,
        multiprocess_dir: Path | None = None,
    ) -> None:
        self.registry = registry
        self._per_user = per_user
        self._multiprocess_dir = multiprocess_dir
        self.users = BoundedLabel(max_users)
        self.teams = BoundedLabel(max_teams)
        self._build_usage(registry)
        self._build_latency(registry)
        self._build_recorder(registry)
        self._build_clients(registry)
        self._build_budgets(registry)
        # Labelled children by label values (see ``_child``), one dict per usage collector.
        self._requests: _Children[Counter] = {}
        self._tokens: _Children[Counter] = {}
        self._cost: _Children[Counter] = {}
        self._sticker: _Children[Counter] = {}
        self._api_equivalent: _Children[Counter] = {}
        self._api_equivalent_tokens: _Children[Counter] = {}
        self._unpriced: _Children[Counter] = {}
        self._problems: _Children[Counter] = {}
        self._unpriced_tokens: _Children[Counter] = {}
        self._exchange: _Children[Histogram] = {}
        self._upstream_headers: _Children[Histogram] = {}
        self._first_token: _Children[Histogram] = {}
        self._added: _Children[Histogram] = {}
        self.pay = PayCollector(personal=personal_pay, per_user=per_user)
        registry.register(self.pay)
        self.roi = RoiCollector()
        registry.register(self.roi)

    def exposition(self) -> bytes:
        """The Prometheus text of ``exposed()``."""
        return generate_latest(self.exposed())

    def exposed(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this process's registry, or all workers' in multiprocess mode.

        With ``tokenmeter serve --workers N`` every worker writes its samples to files in
        ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own mechanism) and any worker's
        ``/metrics`` answers for all of them: a registry merging the files, read when collected.
        """
        if self._multiprocess_dir is None:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self._multiprocess_dir))  # type: ignore[no-untyped-call]
        merged.register(self.pay)  # this worker's rows, fresh from the table, never from files
        merged.register(self.roi)  # the same
        return merged

    def _build_usage(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "tokenmeter_tokens", "Tokens metered, by kind.", _USAGE_LABELS, registry=registry
        )
        self.cost = Counter(
            "tokenmeter_cost_usd", "Dollars metered, by kind.", _USAGE_LABELS, registry=registry
        )
        self.sticker = Counter(
            "tokenmeter_sticker_cost_usd",
            "What the same tokens would cost at list input/output prices with no caching.",
            ("provider", "model", "user", "team"),
            registry=registry,
        )
        self.api_equivalent = Counter(
            "tokenmeter_api_equivalent_cost_usd",
            "What subscription (seat) traffic would have cost at list price; its paid dollars"
            " (tokenmeter_cost_usd) are 0. Never add the two.",
            ("provider", "model", "user", "team"),
            registry=registry,
        )
        self.api_equivalent_tokens = Counter(
            "tokenmeter_api_equivalent_tokens",
            "Tokens (all five kinds) of priced subscription (seat) traffic: paid $/MTok leaves"
            " them out.",
            ("provider", "model", "user", "team"),
            registry=registry,
        )
        self._build_quota(registry)
        self.requests = Counter(
            "tokenmeter_requests",
            "Exchanges forwarded, by how they ended and the HTTP status.",
            ("provider", "model", "status", "code"),
            registry=registry,
        )
        self.unpriced = Counter(
            "tokenmeter_unpriced_requests",
            "Exchanges with usage but no known price (cost recorded as unknown, never $0).",
            ("provider", "model"),
            registry=registry,
        )
        self.unpriced_tokens = Counter(
            "tokenmeter_unpriced_tokens",
            "Tokens (all five kinds) of exchanges with no known price: $/MTok leaves them out.",
            ("provider", "model", "user", "team"),
            registry=registry,
        )
        self.usage_problems = Counter(
            "tokenmeter_usage_problems",
            "Exchanges whose usage could not be read as it should, by problem (usage.Problem).",
            ("provider", "problem"),
            registry=registry,
        )

    def _build_quota(self, registry: CollectorRegistry) -> None:
        """A seat holder's plan limits, per window (``proxy.quota``): the latest reading."""
        labels = ("user", "window")
        self.quota_utilization = Gauge(
            "tokenmeter_seat_quota_utilization",
            "How much of a subscription plan window the seat holder has used (0..1), as the"
            " latest response's unified rate-limit headers said.",
            labels,
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.quota_reset = Gauge(
            "tokenmeter_seat_quota_reset_timestamp_seconds",
            "When the seat holder's plan window resets (Unix time), from the latest response.",
            labels,
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.quota_rejected = Counter(
            "tokenmeter_seat_quota_rejected",
            "Seat responses whose plan window status was rejected (the plan's limit was hit).",
            labels,
            registry=registry,
        )

    def _observe_quota(self, event: UsageEvent, user: str) -> None:
        for reading in event.quota:
            who = (user, reading.window)
            if reading.utilization is not None:
                self.quota_utilization.labels(*who).set(reading.utilization)
            if reading.reset_at is not None:
                self.quota_reset.labels(*who).set(reading.reset_at)
            if reading.status == "rejected":
                self.quota_rejected.labels(*who).inc()

    def _build_latency(self, registry: CollectorRegistry) -> None:
        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, ("provider",), buckets=buckets, registry=registry)

        self.upstream_headers = histogram(
            "tokenmeter_upstream_headers_seconds",
            "Time from request start to upstream response headers.",
            _LATENCY_BUCKETS,
        )
        self.first_token = histogram(
            "tokenmeter_time_to_first_token_seconds",
            "Time from request start to the first streamed chunk.",
            _LATENCY_BUCKETS,
        )
        self.exchange = histogram(
            "tokenmeter_exchange_seconds",
            "Whole exchange, request start to last byte.",
            _LATENCY_BUCKETS,
        )
        self.added = histogram(
            "tokenmeter_proxy_added_seconds",
            "The proxy's own time per request: request in to out, plus response head in to out.",
            _ADDED_BUCKETS,
        )

    def _build_recorder(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "tokenmeter_recorder_queue_depth",
            "Events not yet committed to the database (held in memory or in the spool).",
            registry=registry,
            multiprocess_mode="livesum",  # the workers' queues add up
        )
        self.batch_size = Histogram(
            "tokenmeter_recorder_batch_size",
            "Events per database write.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "tokenmeter_recorder_flush_seconds",
            "Time to write one batch (insert + rollup, one transaction).",
            registry=registry,
        )
        self.spooled = Counter(
            "tokenmeter_recorder_spooled_events",
            "Events left waiting in the local spool because the database failed or hung.",
            registry=registry,
        )
        self.replayed = Counter(
            "tokenmeter_recorder_replayed_events",
            "Spooled events written to the database later (after an outage or a restart).",
            registry=registry,
        )
        self.dropped = Counter(
            "tokenmeter_recorder_dropped_events",
            "Events lost because neither the database nor the spool took them.",
            registry=registry,
        )
        self.quarantined = Counter(
            "tokenmeter_recorder_quarantined_events",
            "Events the database refused for what they hold, kept in the quarantine file.",
            registry=registry,
        )
        self.spool_errors = Counter(
            "tokenmeter_recorder_spool_write_errors",
            "Spool writes or fsyncs that failed or were short (events kept in memory instead).",
            registry=registry,
        )

    def _build_clients(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "tokenmeter_requests_refused",
            "Requests tokenmeter answered itself and never forwarded, by why (README: Limits).",
            ("reason",),
            registry=registry,
        )
        self.client_timeouts = Counter(
            "tokenmeter_client_timeouts",
            "Client connections closed by a timeout: head (request head not complete in time), "
            "body (request body not complete in time), keepalive (idle between requests).",
            ("phase",),
            registry=registry,
        )
        self.identity_overrides = Counter(
            "tokenmeter_identity_overrides",
            "Requests whose x-tokenmeter-user/-team header or /u/ path prefix named someone else "
            "than the authenticated identity (key or key map), by that identity's source; ignored.",
            ("source",),
            registry=registry,
        )
        for reason in REFUSAL_REASONS:  # zero from the start: an alert sees the first one
            self.refused.labels(reason)
        for source in IDENTITY_SOURCES:
            self.identity_overrides.labels(source)
        for phase in TIMEOUT_PHASES:
            self.client_timeouts.labels(phase)

    def _build_budgets(self, registry: CollectorRegistry) -> None:
        self.budget_used = Gauge(
            "tokenmeter_budget_used_ratio",
            "Period-to-date spend of each budget over its amount (1 = spent), as this replica "
            "sees it. Labels: the budgets an admin set, so bounded.",
            ("scope", "name", "period"),
            registry=registry,
            multiprocess_mode="max",  # every worker sees the same counters: take the highest
        )
        self.budget_unenforced = Counter(
            "tokenmeter_budget_unenforced",
            "Metered requests let through unchecked because the budget store was unavailable.",
            registry=registry,
        )

    def set_budget_used(self, ratios: dict[tuple[str, str, str], float]) -> None:
        """Each budget's used ratio; budgets no longer set disappear."""
        self.budget_used.clear()
        for (scope, name, period), ratio in ratios.items():
            self.budget_used.labels(scope, name, period).set(ratio)

    def count_budget_unenforced(self) -> None:
        self.budget_unenforced.inc()

    def count_refused(self, reason: str) -> None:
        """One request answered by tokenmeter itself and not forwarded."""
        self.refused.labels(reason).inc()

    def count_identity_override(self, source: str) -> None:
        """One attempt to name another person than the authenticated one (it was ignored)."""
        self.identity_overrides.labels(source).inc()

    def count_client_timeout(self, phase: str) -> None:
        """One client connection closed because it was too slow (or idle) in ``phase``."""
        self.client_timeouts.labels(phase).inc()

    def observe(self, event: UsageEvent) -> None:
        """Count one finished exchange: request, tokens, dollars and latencies."""
        provider = event.provider
        model = event.model or "unknown"
        user, team = self._who(event)
        code = str(event.http_status) if event.http_status is not None else ""
        _child(self.requests, self._requests, (provider, model, event.status.value, code)).inc()
        usage = event.usage
        tokens, children = self.tokens, self._tokens
        for kind in TOKEN_KINDS:
            count = getattr(usage, kind)
            if count:
                _child(tokens, children, (provider, model, kind, user, team)).inc(count)
        self._observe_cost(event, model, user, team)
        if event.quota:
            self._observe_quota(event, user)
        for problem in event.facts.problems:
            _child(self.usage_problems, self._problems, (provider, problem)).inc()
        self._observe_latency(event)
        if event.added_ms is not None:
            self.observe_added_time(provider, event.added_ms / 1000)

    def observe_added_time(self, provider: str, seconds: float) -> None:
        """The proxy's own time on one request: reading, attributing and preparing it before it
        went upstream, plus passing the response head on (the body streams as it comes)."""
        _child(self.added, self._added, (provider,)).observe(seconds)

    def _who(self, event: UsageEvent) -> tuple[str, str]:
        if not self._per_user:
            return "", ""
        attribution = event.attribution
        user = self.users.labels.get(attribution.user or "")
        if user is None:
            user = self.users.admit(attribution.user or "")
        team = self.teams.labels.get(attribution.team or "")
        if team is None:
            team = self.teams.admit(attribution.team or "")
        return user, team

    def _observe_cost(self, event: UsageEvent, model: str, user: str, team: str) -> None:
        cost = event.cost
        provider = event.provider
        if cost is None:
            _child(self.unpriced, self._unpriced, (provider, model)).inc()
            if tokens := event.usage.total_tokens():
                who = (provider, model, user, team)
                _child(self.unpriced_tokens, self._unpriced_tokens, who).inc(tokens)
            return
        # Prometheus samples are floats by nature; the exact Decimal lives in the store.
        counter, children = self.cost, self._cost
        for kind, dollars in cost.by_kind.items():
            if dollars and kind in _COST_KINDS:
                key = (provider, model, kind, user, team)
                _child(counter, children, key).inc(float(dollars))
        if cost.sticker:
            sticker = _child(self.sticker, self._sticker, (provider, model, user, team))
            sticker.inc(float(cost.sticker))
        if cost.api_equivalent is not None:
            self._observe_seat(event, cost.api_equivalent, (provider, model, user, team))

    def _observe_seat(self, event: UsageEvent, dollars: Decimal, who: tuple[str, ...]) -> None:
        """A seat's exchange: its list price and tokens, beside (never in) the paid dollars."""
        _child(self.api_equivalent, self._api_equivalent, who).inc(float(dollars))
        if tokens := event.usage.total_tokens():
            _child(self.api_equivalent_tokens, self._api_equivalent_tokens, who).inc(tokens)

    def _observe_latency(self, event: UsageEvent) -> None:
        key = (event.provider,)
        _child(self.exchange, self._exchange, key).observe(event.duration_ms / 1000)
        if event.upstream_headers_ms is not None:
            headers = _child(self.upstream_headers, self._upstream_headers, key)
            headers.observe(event.upstream_headers_ms / 1000)
        if event.first_token_ms is not None:
            first = _child(self.first_token, self._first_token, key)
            first.observe(event.first_token_ms / 1000)

    def set_compensation(self, rows: Iterable[Row]) -> None:
        """Replace the pay rows (user, people-table team, USD) and give their people and teams
        label names first (see ``BoundedLabel``), so spend joins to pay."""
        rows = list(rows)
        if self._per_user:
            for user, team, _ in rows:
                self.users.admit(user)
                self.teams.admit(team)
        self.pay.set_rows(rows)

    def set_task_value(self, rows: Iterable[RoiRow]) -> None:
        """Replace the ROI rows (team, value USD, valued-task cost USD), each team bounded as
        on every other series; teams past the bound are summed as "other"."""
        merged: dict[str, tuple[Decimal, Decimal]] = {}
        for team, value, cost in rows:
            label = self.teams.admit(team)
            before = merged.get(label, (Decimal(0), Decimal(0)))
            merged[label] = (before[0] + value, before[1] + cost)
        self.roi.set_rows((team, v, c) for team, (v, c) in sorted(merged.items()))

    # RecorderMetrics (see proxy/store/recorder.py)
    def set_queue_depth(self, n: int) -> None:
        self.queue_depth.set(n)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.flush_seconds.observe(seconds)

    def add_spooled(self, n: int) -> None:
        self.spooled.inc(n)

    def add_dropped(self, n: int) -> None:
        self.dropped.inc(n)

    def add_replayed(self, n: int) -> None:
        self.replayed.inc(n)

    def add_quarantined(self, n: int) -> None:
        self.quarantined.inc(n)

    def add_spool_errors(self, n: int) -> None:
        self.spool_errors.inc(n)
