"""Liveness and Prometheus exposition.

``/metrics`` needs ``TOKENMETER_METRICS_TOKEN`` when one is set (see ``auth``). Before it
answers, the pay series are reloaded from the people table when older than a few seconds, so
every worker and every replica shows the table as it is now, whichever took the write.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from proxy import people
from proxy.api.auth import require_metrics_token

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves and its recorder is alive")
def healthz(request: Request) -> dict[str, object]:
    parts = request.app.state.parts
    return {"status": "ok", "pid": os.getpid(), "in_flight": parts.forwarder.in_flight}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_token)],
)
async def metrics(request: Request) -> Response:
    parts = request.app.state.parts
    if parts.metrics.pay.due():
        parts.metrics.pay.touch()  # one reload at a time, and none per request if it fails
        usd_per = parts.settings.usd_per_currency
        await people.refresh_gauge_quietly(parts.engine, parts.metrics, usd_per)
    # Off the event loop: a big exposition takes long enough to delay proxied traffic.
    text = await asyncio.to_thread(parts.metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
