"""The httpx upstream client (``TOKENMETER_UPSTREAM_CLIENT=httpx``), the reference the others
were measured against, kept as a fallback; imported only when selected.

The contract, the error tree and the egress rules are ``proxy.upstream.base``'s. Here they mean:
httpx's ``trust_env`` off; one pooled transport per route (direct, or through the egress proxy
with its credentials as a ``Proxy-Authorization`` header, never in its URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import httpx

from proxy.egress import (
    PROXY_AUTH_REQUIRED,
    Egress,
    ProxyServer,
    refusal,
    refused_target,
)
from proxy.upstream.base import (
    RawHeaders,
    Timeouts,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)


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


class _Routes(httpx.AsyncBaseTransport):
    """Sends each request direct or through the egress proxy, as ``Egress`` says: one pooled
    httpx transport per route, made on first use (so the TLS context is loaded then)."""

    def __init__(self, egress: Egress, limits: httpx.Limits) -> None:
        self._egress = egress
        self._limits = limits
        self._transports: dict[ProxyServer | None, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        proxy = self._egress.proxy_for(url.scheme, url.host, url.port or _PORTS[url.scheme])
        transport = self._transports.get(proxy) or self._open(proxy)
        return await transport.handle_async_request(request)

    def _open(self, proxy: ProxyServer | None) -> httpx.AsyncHTTPTransport:
        context = self._egress.tls_context()
        via = None
        if proxy is not None:
            auth = [(b"Proxy-Authorization", proxy.authorization)] if proxy.authorization else []
            via = httpx.Proxy(proxy.url, ssl_context=context if proxy.tls else None, headers=auth)
        transport = httpx.AsyncHTTPTransport(verify=context, limits=self._limits, proxy=via)
        self._transports[proxy] = transport
        return transport

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()


_PORTS = {"http": 80, "https": 443}


class HttpxUpstream:
    """httpx.AsyncClient; requests are bare ``httpx.Request``s so no client defaults are added."""

    def __init__(
        self,
        timeouts: Timeouts,
        egress: Egress | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        timeout = httpx.Timeout(
            connect=timeouts.connect_s, read=timeouts.read_s, write=60.0, pool=timeouts.connect_s
        )
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self._egress = egress or Egress()
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport or _Routes(self._egress, limits),
            follow_redirects=False,
            trust_env=False,
        )

    async def send(
        self, method: str, url: str, headers: RawHeaders, body: bytes
    ) -> UpstreamResponse:
        request = httpx.Request(method, url, headers=_pairs(headers), content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(repr(exc)) from exc
        except httpx.ProxyError as exc:
            proxy = self._egress.route(url)
            assert proxy is not None
            raise UpstreamUnreachable(refusal(proxy, refused_target(url), str(exc))) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(repr(exc)) from exc
        if response.status_code == 407 and not url.startswith("https:"):
            proxy = self._egress.route(url)
            if proxy is not None:  # the proxy's own answer to an absolute-form request
                await response.aclose()
                raise UpstreamUnreachable(refusal(proxy, refused_target(url), PROXY_AUTH_REQUIRED))
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        await self._client.aclose()


def _pairs(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return list(headers)
