"""The aiohttp upstream client (``TOKENMETER_UPSTREAM_CLIENT=aiohttp``), kept to compare against
and as a fallback; imported only when selected.

The contract, the error tree and the egress rules are ``proxy.upstream.base``'s. Here they mean:
aiohttp's ``trust_env`` off; the proxy's credentials sent as ``proxy_headers`` on the CONNECT
(https) or as a header of the absolute-form request (http), never in a proxy URL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from multidict import CIMultiDict

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

    def __init__(self, timeouts: Timeouts, egress: Egress | None = None) -> None:
        self._timeouts = timeouts
        self._egress = egress or Egress()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0, keepalive_timeout=60, ttl_dns_cache=300, ssl=self._egress.tls_context()
        )
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
        proxy = self._egress.route(url)
        try:
            response = await session.request(
                method,
                url,
                headers=request_headers,
                data=body or None,
                allow_redirects=False,
                compress=None,
                skip_auto_headers=_AIOHTTP_AUTO_HEADERS,
                proxy=proxy.url if proxy is not None else None,
                proxy_headers=_proxy_credentials(proxy, url, request_headers),
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(repr(exc)) from exc
        except aiohttp.ClientHttpProxyError as exc:
            assert proxy is not None
            answer = f"{exc.status} {exc.message}"
            raise UpstreamUnreachable(refusal(proxy, refused_target(url), answer)) from exc
        except aiohttp.ClientResponseError as exc:  # its repr prints the request's headers
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(repr(exc)) from exc
        if response.status == 407 and proxy is not None and not url.startswith("https:"):
            response.release()  # the proxy's own answer to an absolute-form request
            raise UpstreamUnreachable(refusal(proxy, refused_target(url), PROXY_AUTH_REQUIRED))
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _proxy_credentials(
    proxy: ProxyServer | None, url: str, request_headers: CIMultiDict[str]
) -> dict[str, str] | None:
    """Where aiohttp sends the proxy's credentials to the proxy alone: on the CONNECT for
    https (as ``proxy_headers``), on the absolute-form request itself for http."""
    if proxy is None or proxy.authorization is None:
        return None
    credentials = proxy.authorization.decode("latin-1")
    if url.startswith("https:"):
        return {"Proxy-Authorization": credentials}
    request_headers["Proxy-Authorization"] = credentials
    return None
