"""``create_app(settings)``: the one place where tokenmeter's parts are built and wired.

The returned ASGI app sends tokenmeter's own paths (``/api/``, ``/healthz``, ``/metrics``,
``/docs``) to a FastAPI app, the dashboard's (``/`` and ``/web/``) to another, and everything
else to the ``Forwarder``. Each part gets what it needs
handed in (the upstream client, the engine, the registry, the recorder), so tests build the real
app around fakes: an upstream transport, a fresh registry, a throwaway database.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import mark_process_dead
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import api, people, web
from proxy.apikeys import KeyRefresher
from proxy.attribution import Identifier, load_key_owners
from proxy.batch_jobs import BatchJobs
from proxy.budgets import time_zone
from proxy.config import Settings, egress_of, ensure_data_dir
from proxy.credentials import KeyCache, KeyGate
from proxy.failures import Failure
from proxy.forward import Forwarder, Receive, Scope, Send
from proxy.guard import BudgetGuard
from proxy.meter import AccessLog, Meter
from proxy.metrics import Metrics
from proxy.oidc import OidcVerifier
from proxy.pricing import Pricer, load_overrides
from proxy.providers import Provider
from proxy.providers import anthropic as anthropic_provider
from proxy.providers import openai as openai_provider
from proxy.serving import ServerLimits
from proxy.store.alerts import Alerts
from proxy.store.budgets import BudgetRefresher, Leases
from proxy.store.engine import make_engine, upgrade
from proxy.store.recorder import Recorder
from proxy.store.retention import Retention
from proxy.store.spool import Spool
from proxy.upstream import Timeouts, Upstream

log = logging.getLogger("tokenmeter.app")

_OWN_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz", "/metrics")


@dataclass
class Parts:
    """Everything ``create_app`` built, kept for the lifespan, the API and tests."""

    settings: Settings
    client: Upstream
    engine: AsyncEngine
    metrics: Metrics
    pricer: Pricer
    recorder: Recorder
    forwarder: Forwarder
    retention: Retention
    keys: KeyRefresher
    batches: BatchJobs
    guard: BudgetGuard
    budget_refresher: BudgetRefresher
    identifier: Identifier


class TokenmeterApp:
    """The ASGI entry point: routes by path prefix, nothing else. Also the ``ServerHooks`` of
    the HTTP protocol (proxy/serving.py): its limits, counters and error bodies."""

    def __init__(self, parts: Parts, api_app: FastAPI, web_app: FastAPI) -> None:
        self.parts = parts
        self.api = api_app
        self.web = web_app
        self._forward = parts.forwarder
        self.server_hooks = self
        self.limits = ServerLimits.from_settings(parts.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OWN_PREFIXES):
            await self.api(scope, receive, send)  # the lifespan too
        elif web.is_web_path(scope["path"]):
            await self.web(scope, receive, send)
        else:
            await self._forward(scope, receive, send)

    def error_body(self, target: bytes, failure: Failure, message: str) -> bytes:
        """An error the server protocol answers itself, in the format of the path asked for."""
        path = target.decode("latin-1")
        if path.startswith(_OWN_PREFIXES) or web.is_web_path(path.partition("?")[0]):
            return json.dumps({"detail": message}).encode()
        return self._forward.error_body(path, failure, message)

    def count_timeout(self, phase: str) -> None:
        self.parts.metrics.count_client_timeout(phase)

    def count_refused(self, reason: str) -> None:
        self.parts.metrics.count_refused(reason)


def providers_for(settings: Settings) -> list[Provider]:
    """The upstream APIs this proxy serves, with their path prefixes."""
    return [
        anthropic_provider.provider(settings.anthropic_upstream),
        openai_provider.provider(settings.openai_upstream),
    ]


def make_upstream(settings: Settings) -> Upstream:
    """The upstream client ``TOKENMETER_UPSTREAM_CLIENT`` names: ``http11`` (the default),
    ``aiohttp`` or ``httpx``; built without I/O (connections open on first use). The one place
    an implementation is imported, on demand: the library clients weigh ~25 MB of RSS that a
    proxy on the default client never needs."""
    timeouts = Timeouts(settings.connect_timeout_s, settings.read_timeout_s)
    egress = egress_of(settings)
    if settings.upstream_client == "httpx":
        from proxy.upstream.httpx import HttpxUpstream

        return HttpxUpstream(timeouts, egress)
    if settings.upstream_client == "aiohttp":
        from proxy.upstream.aiohttp import AiohttpUpstream

        return AiohttpUpstream(timeouts, egress)
    from proxy.upstream.http11 import Http11Upstream

    return Http11Upstream(timeouts, egress=egress)


def build_parts(
    settings: Settings,
    *,
    upstream: Upstream | None = None,
    registry: CollectorRegistry | None = None,
    spool: Spool | None = None,
) -> Parts:
    """Build every part from settings. Creates objects only: no connection, no I/O."""
    metrics = Metrics(
        registry or CollectorRegistry(),
        per_user=settings.metrics_per_user,
        personal_pay=settings.metrics_personal_pay,
        max_users=settings.metrics_max_users,
        max_teams=settings.metrics_max_teams,
        multiprocess_dir=settings.prometheus_multiproc_dir,
    )
    overrides = load_overrides(settings.prices_file) if settings.prices_file else None
    pricer = Pricer(overrides)
    engine = make_engine(settings.database_url)
    guard = BudgetGuard(
        time_zone(settings.budget_tz),
        pricer.estimate,
        fail_closed=settings.budget_fail_closed,
        stale_after_s=settings.budget_stale_s,
        unenforced=metrics,
    )
    recorder = Recorder(
        engine,
        spool or Spool(settings.spool_dir),
        metrics,
        batch_size=settings.recorder_batch_size,
        flush_interval_s=settings.recorder_flush_interval_s,
        queue_max=settings.recorder_queue_max,
        write_timeout_s=settings.db_write_timeout_s,
        retry_max_s=settings.recorder_retry_max_s,
        budget_tz=guard.tz,
        budget_holder=guard.holder,
        on_written=guard.written,
    )
    owners = load_key_owners(settings.key_map_file) if settings.key_map_file else None
    client = upstream or make_upstream(settings)
    cache = KeyCache()
    gate = KeyGate(cache, settings.company_keys(), require_key=settings.require_key)
    batches = BatchJobs(engine, settings.public_url)
    identifier = Identifier(settings.key_salt, owners, metrics.count_identity_override)
    forwarder = Forwarder(
        client,
        providers_for(settings),
        identifier,
        Meter(pricer, metrics, recorder, AccessLog() if settings.access_log == "json" else None),
        max_in_flight=settings.max_in_flight,
        max_body_bytes=settings.max_body_mb * 1024 * 1024,
        refusals=metrics,
        gate=gate,
        oidc=_oidc(settings),
        batches=batches,
        guard=guard,
    )
    retention = Retention(engine, settings.retention_days)
    keys = KeyRefresher(engine, cache, settings.key_cache_s)
    alerts = Alerts(engine, settings.alert_webhook_url) if settings.alert_webhook_url else None
    guard.leases = Leases(engine, guard.holder)
    refresher = BudgetRefresher(engine, guard, metrics, settings.budget_refresh_s, alerts)
    return Parts(
        settings,
        client,
        engine,
        metrics,
        pricer,
        recorder,
        forwarder,
        retention,
        keys,
        batches,
        guard,
        refresher,
        identifier,
    )


def _oidc(settings: Settings) -> OidcVerifier | None:
    if settings.oidc_issuer is None or settings.oidc_audience is None:
        return None
    return OidcVerifier(
        settings.oidc_issuer,
        settings.oidc_audience,
        jwks_url=settings.oidc_jwks_url,
        user_claim=settings.oidc_user_claim,
        groups_claim=settings.oidc_groups_claim,
    )


def create_app(
    settings: Settings | None = None,
    *,
    upstream: Upstream | None = None,
    registry: CollectorRegistry | None = None,
    spool: Spool | None = None,
) -> TokenmeterApp:
    """Build the whole proxy. Nothing connects until the ASGI lifespan starts. ``upstream``,
    ``registry`` and ``spool`` replace the parts settings would build (tests inject fakes)."""
    settings = settings or Settings()
    parts = build_parts(settings, upstream=upstream, registry=registry, spool=spool)
    api_app = api.build(parts, lifespan=_lifespan(parts))
    return TokenmeterApp(parts, api_app, web.build(parts))


def _lifespan(parts: Parts) -> Any:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if parts.settings.migrate_on_start:
            ensure_data_dir(parts.settings.database_url)
            await asyncio.to_thread(upgrade, parts.settings.database_url)
        await parts.recorder.start()
        await parts.retention.start()
        await parts.keys.start()
        await parts.budget_refresher.start()
        await people.refresh_gauge_quietly(
            parts.engine, parts.metrics, parts.settings.usd_per_currency
        )
        _warn_if_metrics_are_open(parts.settings)
        _freeze_startup_heap()
        log.info("%s", startup_summary(parts.settings))
        try:
            yield
        finally:
            timeout = parts.settings.db_write_timeout_s
            await _bounded(parts.retention.stop(), timeout, "retention's last purge")
            await _bounded(parts.keys.stop(), timeout, "writing keys' last use")
            await _bounded(parts.batches.drain(), timeout, "batch records")
            await parts.budget_refresher.stop()
            await parts.recorder.stop()  # bounded by the write timeout itself
            await parts.client.aclose()
            await _bounded(parts.engine.dispose(), timeout, "closing database connections")
            if parts.settings.prometheus_multiproc_dir is not None:
                path = str(parts.settings.prometheus_multiproc_dir)
                mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]

    return lifespan


def _routes(settings: Settings) -> str:
    """Each provider's upstream and how it is reached (direct or via which egress proxy)."""
    egress = egress_of(settings)
    return ", ".join(
        f"{p.name} -> {p.upstream} ({egress.describe(p.upstream)})" for p in providers_for(settings)
    )


def startup_summary(settings: Settings) -> str:
    """The one line a person reads at start: where traffic goes, where usage is kept, who may
    read it (never a password or token)."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.database_url).render_as_string(hide_password=True)
    api = "admin token" if settings.admin_token else "loopback only (no TOKENMETER_ADMIN_TOKEN)"
    return (
        f"tokenmeter ready (pid {os.getpid()}): {_routes(settings)}; database {database}; "
        f"spool {settings.spool_dir}; /api/: {api}; access log {settings.access_log}"
    )


def _warn_if_metrics_are_open(settings: Settings) -> None:
    if settings.admin_token is not None and settings.metrics_token is None:
        log.warning(
            "/api/ needs the admin token but /metrics is open to anyone who reaches this port "
            "(per-person spend, team pay totals): set TOKENMETER_METRICS_TOKEN"
        )


async def _bounded(work: Coroutine[Any, Any, None], timeout_s: float, what: str) -> None:
    """Shutdown steps that talk to the database: a hung one is left behind (cancelled, not
    awaited), so SIGTERM always finishes; the recorder's spool keeps what was not written."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if task not in done:
        task.cancel()
        log.warning("shutdown: %s took longer than %.1f s; left behind", what, timeout_s)
    elif task.exception() is not None:
        log.warning("shutdown: %s failed: %r", what, task.exception())


def _freeze_startup_heap() -> None:
    """Move everything built at start (the price catalog, FastAPI, SQLAlchemy: ~140k objects)
    out of the cyclic garbage collector's reach. Left there, every full collection walks them
    all: a 70 ms pause on the event loop, which was the proxy's worst latency under load."""
    gc.collect()
    gc.freeze()
