"""The library upstream clients, ``TOKENMETER_UPSTREAM_CLIENT=aiohttp|httpx``: the same contract
and error tree as the default ``proxy.http11`` (see ``proxy.upstream``), on aiohttp and httpx.
Kept to compare against and as a fallback; imported only when selected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aiohttp
import httpx
from multidict import CIMultiDict

from proxy.upstream import (
    RawHeaders,
    Timeouts,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)


class _AiohttpResponse:
    __slots__ = ("_response", "raw_headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.raw_headers = list(response.raw_headers)

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamBroken(repr(exc)) from exc

    async def close(self) -> None:
        self._response.release()


# aiohttp adds these when a request lacks them; an agent's request must go out as it came.
_AIOHTTP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class AiohttpUpstream:
    """aiohttp session, created lazily inside the running loop (it must be)."""

    def __init__(self, timeouts: Timeouts) -> None:
        self._timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._timeouts.connect_s,
            sock_read=self._timeouts.read_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=_AIOHTTP_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: bytes
    ) -> UpstreamResponse:
        session = self._session or self._open()
        request_headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in headers
        )
        try:
            response = await session.request(
                method,
                url,
                headers=request_headers,
                data=body or None,
                allow_redirects=False,
                compress=None,
                skip_auto_headers=_AIOHTTP_AUTO_HEADERS,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(repr(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(repr(exc)) from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _HttpxResponse:
    __slots__ = ("_response", "raw_headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.raw_headers = list(response.headers.raw)

    def header(self, name: str) -> str | None:
        value: str | None = self._response.headers.get(name)
        return value

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise UpstreamBroken(repr(exc)) from exc

    async def close(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    """httpx.AsyncClient; requests are bare ``httpx.Request``s so no client defaults are added."""

    def __init__(self, timeouts: Timeouts, transport: httpx.AsyncBaseTransport | None = None):
        timeout = httpx.Timeout(
            connect=timeouts.connect_s, read=timeouts.read_s, write=60.0, pool=timeouts.connect_s
        )
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self._client = httpx.AsyncClient(
            timeout=timeout, limits=limits, transport=transport, follow_redirects=False
        )

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: bytes
    ) -> UpstreamResponse:
        request = httpx.Request(method, url, headers=_pairs(headers), content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(repr(exc)) from exc
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        await self._client.aclose()


def _pairs(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return list(headers)
