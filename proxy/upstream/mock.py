"""An upstream in the same process, for tests: no socket, no thread, no server.

Like httpx's ``MockTransport``: ``MockUpstream(handler)`` keeps the contract of
``proxy.upstream.base`` by calling ``handler(request)`` for each ``send`` and answering what it
returns, so a test drives the forwarder in microseconds and sees exactly what went upstream.

- ``handler`` gets a ``MockRequest`` (method, URL, headers and body as the client was about to
  send them) and returns a ``MockResponse``, or an awaitable of one (an async handler can make
  upstream slow or silent); it raises ``UpstreamUnreachable`` or ``UpstreamTimeout`` to fail the
  send as a real client would.
- A ``MockResponse`` body is bytes, or chunks (an iterable, or an async iterable) relayed one by
  one; an exception among them breaks the body off there, reported as ``UpstreamBroken`` as the
  real clients report it.
- ``asgi(app)`` is a handler that answers with an ASGI app (the fakes in ``tests/fakes/``), its
  body streamed chunk by chunk as the app sends it; an app that ends without finishing its body
  or raises has broken the body off.
- Every request sent is kept in ``requests``, every response in ``responses`` (each knows whether
  it was ``closed``), so a test can check the contract's end: every response is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxy.upstream.base import RawHeaders, UpstreamBroken, UpstreamError, UpstreamUnreachable

Body = bytes | Iterable[bytes | BaseException] | AsyncIterable[bytes]


def _header(headers: RawHeaders, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


@dataclass(frozen=True, slots=True)
class MockRequest:
    """One request as the forwarder sent it upstream."""

    method: str
    url: str
    headers: RawHeaders
    body: bytes

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


class MockResponse:
    """An upstream answer (``UpstreamResponse``); ``body`` is bytes or chunks (module doc)."""

    def __init__(
        self,
        status: int = 200,
        headers: RawHeaders | None = None,
        body: Body = b"",
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.status = status
        self.raw_headers: RawHeaders = list(headers or [])
        self.closed = False
        self._body = body
        self._on_close = on_close

    def header(self, name: str) -> str | None:
        return _header(self.raw_headers, name)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in _chunks_of(self._body):
                yield chunk
        except UpstreamError:
            raise
        except Exception as exc:
            raise UpstreamBroken(repr(exc)) from exc

    async def close(self) -> None:
        self.closed = True
        if self._on_close is not None:
            await self._on_close()


async def _chunks_of(body: Body) -> AsyncIterator[bytes]:
    if isinstance(body, bytes):
        if body:
            yield body
    elif isinstance(body, AsyncIterable):
        async for chunk in body:
            yield chunk
    else:
        for item in body:
            if isinstance(item, BaseException):
                raise item
            yield item


Handler = Callable[[MockRequest], MockResponse | Awaitable[MockResponse]]


class MockUpstream:
    """The ``Upstream`` contract, answered by ``handler`` (module doc)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[MockRequest] = []
        self.responses: list[MockResponse] = []
        self.closed = False

    async def send(self, method: str, url: str, headers: RawHeaders, body: bytes) -> MockResponse:
        request = MockRequest(method, url, list(headers), body)
        self.requests.append(request)
        answer = self._handler(request)
        response = await answer if inspect.isawaitable(answer) else answer
        self.responses.append(response)
        return response

    async def aclose(self) -> None:
        self.closed = True


def asgi(app: Callable[..., Awaitable[None]]) -> Handler:
    """A handler that answers each request with the ASGI ``app``, streaming its body."""

    async def handle(request: MockRequest) -> MockResponse:
        return await _AsgiExchange(app, request).start()

    return handle


class _AsgiExchange:
    """One request run through an ASGI app as a task; its messages read from a queue."""

    def __init__(self, app: Callable[..., Awaitable[None]], request: MockRequest) -> None:
        self._app = app
        self._request = request
        self._sent: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        self._delivered = False  # the request body went to the app
        self._ended = False  # the app sent its whole body
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> MockResponse:
        self._task = asyncio.create_task(self._run())
        first = await self._sent.get()
        if not isinstance(first, dict) or first["type"] != "http.response.start":
            await self.stop()
            raise UpstreamUnreachable(f"the app answered no response head: {first!r}")
        headers = list(first.get("headers", []))
        return MockResponse(first["status"], headers, self._body(), on_close=self.stop)

    async def _run(self) -> None:
        try:
            await self._app(_scope(self._request), self._receive, self._send)
            await self._sent.put(None)  # the app returned: whatever it sent is all there is
        except Exception as exc:
            await self._sent.put(exc)

    async def _receive(self) -> dict[str, Any]:
        if not self._delivered:
            self._delivered = True
            return {"type": "http.request", "body": self._request.body, "more_body": False}
        await asyncio.Future()  # never: nobody hangs up on the app until it is cancelled
        raise AssertionError("unreachable")

    async def _send(self, message: dict[str, Any]) -> None:
        await self._sent.put(message)

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._sent.get()
            if not isinstance(message, dict):
                raise message or ConnectionResetError("the app ended before its body did")
            if not message.get("more_body", False):
                self._ended = True
            yield message.get("body", b"")
            if self._ended:
                return

    async def stop(self) -> None:
        """Let the app finish what follows a whole body; cancel it if the body was left."""
        if self._task is None or self._task.done():
            return
        if not self._ended:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _scope(request: MockRequest) -> dict[str, Any]:
    url = urlsplit(request.url)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": url.path,
        "raw_path": url.path.encode("latin-1"),
        "query_string": url.query.encode("latin-1"),
        "headers": [(name.lower(), value) for name, value in request.headers],
        "server": (url.hostname, url.port),
        "client": ("127.0.0.1", 0),
    }
