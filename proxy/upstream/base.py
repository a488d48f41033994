"""The upstream contract: send a request as received, stream the answer back; and its errors.

Three interchangeable implementations of one small interface, chosen by
``TOKENMETER_UPSTREAM_CLIENT``: ``http11`` (the default, in ``.http11``: a small HTTP/1.1
client on asyncio and httptools, measured in ``bench/`` at a fraction of the CPU per request),
``aiohttp``, and ``httpx`` (the reference). All send exactly the headers and body
bytes they are given (no default User-Agent, Accept or Accept-Encoding of their own), never
follow redirects, never decode the response (bytes go back to the agent as upstream sent them),
and keep connections pooled. All take one ``proxy.egress.Egress``: the company's HTTP proxy
(a CONNECT tunnel for https, absolute-form requests for http, ``NO_PROXY`` honoured) and the
certificate authorities that verify upstream TLS.
They route and verify as it says, never as the process environment says; the proxy's
credentials travel as a ``Proxy-Authorization`` header built from it, so no library object holds
them in a URL that an exception's repr could print; a proxy's refusal is reported in
``egress.refusal``'s words. ``proxy.app.make_upstream`` picks the client; ``.mock`` answers
in-process, for tests.

This module is a leaf: it imports nothing of the project's, so every client, the forwarder and
the tests build on it, never the other way round.

Errors form a small tree, so the forwarder needs no client-specific knowledge::

    UpstreamError
    ├── UpstreamUnreachable   no response: refused, reset, DNS, TLS, the egress proxy refused
    │                         the tunnel (the client gets a 502)
    ├── UpstreamTimeout       no response in time (the client gets a 504)
    └── UpstreamBroken        the response body broke off midway (recorded as incomplete)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

RawHeaders = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """The upstream exchange failed; see the subclasses."""


class UpstreamUnreachable(UpstreamError):
    """No response: connection refused or reset, name or TLS failure."""


class UpstreamTimeout(UpstreamError):
    """No response within the connect or read timeout."""


class UpstreamBroken(UpstreamError):
    """The response started but its body broke off."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float
    read_s: float


class UpstreamResponse(Protocol):
    status: int
    raw_headers: RawHeaders

    def header(self, name: str) -> str | None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Upstream(Protocol):
    """Sends one request; the response body is read with ``chunks()`` then ``close()``d."""

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: bytes
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...
