"""The reference: a naive FastAPI pass-through with no metering, on the same stack as tokenmeter.

What a competent engineer writes in an afternoon: one catch-all route, the body read whole and
forwarded, the response streamed back with ``StreamingResponse``. ``--client httpx`` (the default,
the issue's "reference") uses one shared ``httpx.AsyncClient``; ``--client aiohttp`` uses one
``aiohttp.ClientSession`` instead, to show what the upstream client layer costs.

Run: ``python -m bench.passthrough --port 9003 --upstream http://127.0.0.1:9001``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)


def _forwardable(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}


def httpx_app(upstream: str) -> FastAPI:
    """The pass-through on one shared ``httpx.AsyncClient``."""
    holder: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=upstream, limits=limits, timeout=600) as client:
            holder["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        client = holder["client"]
        outgoing = client.build_request(
            request.method,
            "/" + path,
            params=request.query_params,
            headers=_forwardable(request.headers),
            content=await request.body(),
        )
        reply = await client.send(outgoing, stream=True)
        return StreamingResponse(
            reply.aiter_raw(),
            status_code=reply.status_code,
            headers=_forwardable(reply.headers),
            background=BackgroundTask(reply.aclose),
        )

    return app


def aiohttp_app(upstream: str) -> FastAPI:
    """The same pass-through on one shared ``aiohttp.ClientSession``."""
    import aiohttp

    holder: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(
            upstream, connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            holder["session"] = session
            yield

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Response:
        reply = await holder["session"].request(
            request.method,
            "/" + path,
            params=list(request.query_params.multi_items()),
            headers=_forwardable(request.headers),
            data=await request.body(),
        )
        return StreamingResponse(
            reply.content.iter_any(),
            status_code=reply.status,
            headers=_forwardable(reply.headers),
            background=BackgroundTask(reply.release),
        )

    return app


APPS: dict[str, Callable[[str], FastAPI]] = {"httpx": httpx_app, "aiohttp": aiohttp_app}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--client", choices=sorted(APPS), default="httpx")
    args = parser.parse_args()
    app = APPS[args.client](args.upstream.rstrip("/"))
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
