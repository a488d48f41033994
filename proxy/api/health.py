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
every worker and every replica shows the table as it is now, whichever took the write; so are
the ROI series (``roimetrics``: task value and valued-task cost per team, from the database). The
exposition itself is prometheus_client's ASGI app (``make_asgi_app``) over ``Metrics.exposed``
(every worker's samples with ``serve --workers N``), run in a worker thread: a big exposition
takes long enough to delay proxied traffic if it ran on the event loop. It answers in the
Prometheus text format whatever the scraper's ``Accept`` prefers (Prometheus asks for
OpenMetrics first), the format every dashboard and rule was checked against, and gzip when the
scraper accepts it. The query string is not passed on: prometheus_client's ``?name[]=`` filter
leaves out collectors that do not describe their series (the pay series, every worker's files).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, make_asgi_app

from proxy import people, reports
from proxy.api.auth import require_metrics_token
from proxy.api.deps import ApiParts, PartsDep

router = APIRouter()
Message = MutableMapping[str, Any]
TEXT_FORMAT = (b"accept", b"text/plain; version=1.0.0")


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
async def metrics(request: Request, parts: PartsDep) -> Response:
    await _reload_pay(parts)
    await _reload_roi(parts)
    start, body = await asyncio.to_thread(_expose, parts.metrics.exposed, _scope(request))
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return Response(body["body"], status_code=start["status"], headers=headers)


async def _reload_pay(parts: ApiParts) -> None:
    if parts.metrics.pay.due():
        parts.metrics.pay.touch()  # one reload at a time, and none per request if it fails
        usd_per = parts.settings.usd_per_currency
        await people.refresh_gauge_quietly(parts.engine, parts.metrics, usd_per)


async def _reload_roi(parts: ApiParts) -> None:
    if parts.metrics.roi.due():
        parts.metrics.roi.touch()  # one reload at a time, and none per request if it fails
        rows = await reports.value_by_team_quietly(parts.engine)
        if rows is not None:  # else the last rows stay: /metrics still answers
            parts.metrics.set_task_value(rows)


def _scope(request: Request) -> Message:
    """The request as the exposition app reads it, asking for the text format."""
    headers = [(name, value) for name, value in request.headers.raw if name != b"accept"]
    return {"type": "http", "query_string": b"", "headers": [*headers, TEXT_FORMAT]}


def _expose(exposed: Callable[[], CollectorRegistry], scope: Message) -> tuple[Message, Message]:
    """prometheus_client's ASGI app run to its end on this thread: (response start, body)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(make_asgi_app(exposed())(scope, receive, send))
    start, body = sent
    return start, body
