"""Liveness with the store's state, and Prometheus exposition.

``/healthz`` answers 200 while the process serves, with ``"status": "degraded"`` when the
database is away or hangs (events then wait in the spool), or the spool cannot be written. It
stays 200 on purpose: Kubernetes probes it for liveness and readiness, and neither a restart nor
taking every replica out of the Service would bring the database back; they would only cut the
agents' traffic, which the proxy keeps serving and metering meanwhile. The body says what is
wrong for people and monitors; the ``TokenmeterEventsSpooling`` alert pages. Only a recorder
that has stopped working while the process still serves answers 503, so the pod is restarted
(what it had written ahead is replayed by the next process).

``/metrics`` needs ``TOKENMETER_METRICS_TOKEN`` when one is set (see ``auth``). Before it
answers, the pay series are reloaded from the people table when older than a few seconds, so
every worker and every replica shows the table as it is now, whichever took the write.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from proxy import people
from proxy.api.auth import require_metrics_token
from proxy.api.deps import PartsDep

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves; the store's state in the body")
def healthz(parts: PartsDep) -> JSONResponse:
    store = parts.recorder.health()
    ok = store["database"] == "ok" and store["spool"] == "ok"
    body = {
        "status": "ok" if ok else "degraded",
        "pid": os.getpid(),
        "in_flight": parts.forwarder.in_flight,
        "store": store,
    }
    return JSONResponse(body, status_code=200 if store["recorder"] == "running" else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_token)],
)
async def metrics(parts: PartsDep) -> Response:
    if parts.metrics.pay.due():
        parts.metrics.pay.touch()  # one reload at a time, and none per request if it fails
        usd_per = parts.settings.usd_per_currency
        await people.refresh_gauge_quietly(parts.engine, parts.metrics, usd_per)
    # Off the event loop: a big exposition takes long enough to delay proxied traffic.
    text = await asyncio.to_thread(parts.metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
