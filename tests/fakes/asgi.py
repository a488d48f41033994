"""ASGI plumbing the JSON fakes share (the Admin APIs, the identity provider): the lifespan
handshake, and one JSON answer with its status and headers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """Answer the lifespan protocol if ``scope`` is it; True when it was (nothing more to do)."""
    if scope["type"] != "lifespan":
        return False
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
    return True


async def send_json(
    send: Any, status: int, body: object, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """One JSON answer: ``body`` already encoded (str or bytes), or a value ``json.dumps`` takes."""
    if isinstance(body, bytes):
        data = body
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": [*head, *headers]})
    await send({"type": "http.response.body", "body": data})


def request_of(scope: dict[str, Any]) -> tuple[str, dict[str, list[str]], dict[str, str]]:
    """(path, parsed query, lower-cased headers) of an HTTP ``scope``."""
    query = parse_qs(scope["query_string"].decode())
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    return scope["path"], query, headers
