"""Liveness with the store's state, and Prometheus exposition.

``/healthz`` answers 200 while the process serves, with ``"status": "degraded"`` when the
database is away or hangs (events then wait in the spool), or the spool cannot be written. It
stays 200 on purpose: Kubernetes probes it for liveness and readiness, and neither a restart nor
taking every replica out of the Service would bring the database back; they would only cut the
agents' traffic, which the proxy keeps serving and metering meanwhile. The body says what is
wrong for people and monitors; the ``TokenmeterEventsSpooling`` alert pages. Only a recorder
that has stopped working while the process still serves answers 503, so the pod is restarted
(what it had written ahead is replayed by the next process).
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves; the store's state in the body")
def healthz(request: Request) -> JSONResponse:
    parts = request.app.state.parts
    store = parts.recorder.health()
    ok = store["database"] == "ok" and store["spool"] == "ok"
    body = {
        "status": "ok" if ok else "degraded",
        "pid": os.getpid(),
        "in_flight": parts.forwarder.in_flight,
        "store": store,
    }
    return JSONResponse(body, status_code=200 if store["recorder"] == "running" else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.parts.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
