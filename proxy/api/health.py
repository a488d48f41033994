"""Liveness and Prometheus exposition."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves and its recorder is alive")
def healthz(request: Request) -> dict[str, object]:
    parts = request.app.state.parts
    return {"status": "ok", "pid": os.getpid(), "in_flight": parts.forwarder.in_flight}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.parts.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
