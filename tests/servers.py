"""Run an ASGI app on a real loopback port, in a thread, for as long as a test needs it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port nothing answers on, for as long as the block runs. Bound but never
    listening, so a connection is refused and the port cannot be handed to a server started
    meanwhile (a closed ``free_port()`` can be: the proxy under test once got its own "dead"
    upstream's port and answered itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> (or ``host``); ``url`` is its base URL.

    uvicorn's proxy headers are off unless a test turns them on: a test's client address is
    the real TCP peer, as with ``tokenmeter serve`` (``SERVER_OPTIONS``)."""

    def __init__(
        self, app: Any, port: int | None = None, host: str = "127.0.0.1", **options: Any
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        options.setdefault("proxy_headers", False)
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
            **options,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
