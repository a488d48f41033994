"""Egress: how tokenmeter reaches an upstream (directly, or through the company's HTTP proxy) and
which certificate authorities it trusts on the way.

One ``Egress`` is built from settings (``TOKENMETER_HTTPS_PROXY`` or ``HTTPS_PROXY``,
``…_HTTP_PROXY``, ``…_NO_PROXY``, ``TOKENMETER_CA_BUNDLE`` or ``SSL_CERT_FILE``) and handed to
whichever upstream client runs, so all three route and verify alike:

- ``route(url)``: the ``ProxyServer`` to go through, or None for a direct connection. An https
  URL uses the https proxy (a CONNECT tunnel; TLS to the origin end to end, inside it), an http
  URL the http proxy (absolute-form requests), unless ``NO_PROXY`` exempts the host.
- ``NO_PROXY`` follows Python's ``urllib.request.proxy_bypass_environment`` (comma-separated;
  ``*`` bypasses everything; a name matches itself and every subdomain, a leading ``.`` is
  ignored; ``name:port`` only on that port; an IP literal matches that address), and adds what
  curl, Go and requests also accept: CIDR blocks (``10.0.0.0/8``), ``*.example.com`` read as
  ``.example.com``, and ``*`` as one entry among others. Names are never resolved to match an IP.
- ``tls_context()``: one ``ssl.SSLContext`` for the upstream and for an https:// proxy: the CA
  bundle's certificates *instead of* the system's (as curl's ``--cacert`` and ``SSL_CERT_FILE``
  do), or the system's store without one. Built on first use (loading the system store takes
  ~17 ms, which a process that never opens a TLS connection should not pay).

Proxy credentials (``http://user:pass@proxy:3128``) become a ``Proxy-Authorization: Basic``
header, sent to the proxy only; a ``ProxyServer`` prints, logs and reports itself without them.
"""

from __future__ import annotations

import base64
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a proxy answers to a request it wants credentials for: for a CONNECT as for an
# absolute-form http request, where all three clients turn it into an UpstreamUnreachable too.
PROXY_AUTH_REQUIRED = "407 Proxy Authentication Required"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProxyServer:
    """An HTTP proxy to reach upstreams through; ``url`` never carries the credentials."""

    host: str
    port: int
    tls: bool = False  # an https:// proxy: TLS to the proxy, then TLS to the origin inside it
    authorization: bytes | None = field(default=None, repr=False)  # "Basic …"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_proxy_url(value: str) -> ProxyServer:
    """``http://[user:pass@]host[:port]`` (``host:port`` alone means http, as in curl and
    urllib); ``https://`` for a proxy that speaks TLS. ValueError on anything else."""
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"proxy URL must start with http:// or https:// (SOCKS is not supported), "
            f"got scheme {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError("proxy URL has no host")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]  # .port raises ValueError if not a port
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(credentials.encode("utf-8"))
    return ProxyServer(parts.hostname, port, parts.scheme == "https", authorization)


def refusal(proxy: ProxyServer, target: str, answer: str) -> str:
    """What an upstream client says when the egress proxy refuses ``target`` (``CONNECT
    host:port``, or an http URL): the proxy without its credentials, and the proxy's answer."""
    return f"egress proxy {proxy.url} refused {target}: {answer[:200]}"


def refused_target(url: str) -> str:
    """What the proxy was asked for, in ``refusal``: ``CONNECT host:port`` for an https URL,
    the origin itself for an http one."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"{parts.scheme}://{parts.netloc}"
    host = parts.hostname or ""
    return f"CONNECT {f'[{host}]' if ':' in host else host}:{parts.port or 443}"


class NoProxy:
    """The hosts ``NO_PROXY`` exempts from the proxy (rules in the module doc)."""

    def __init__(self, value: str | None) -> None:
        entries = [entry.strip().lower() for entry in (value or "").split(",")]
        self.everything = "*" in entries
        networks: list[Network] = []
        names: list[str] = []
        for entry in filter(None, entries):
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))  # ValueError if not
            else:
                names.append(_bare(entry.removeprefix("*").lstrip(".")))
        self._names = tuple(filter(None, names))
        self._networks = tuple(networks)

    def bypass(self, host: str, port: int) -> bool:
        """True if a connection to ``host:port`` goes direct."""
        if self.everything:
            return True
        host = _bare(host.lower())
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for name in self._names:
            suffix = f".{name}"
            if name in (host, hostport) or host.endswith(suffix) or hostport.endswith(suffix):
                return True
        return bool(self._networks) and _in_networks(host, self._networks)


def _bare(name: str) -> str:
    """An IPv6 literal without its brackets (``[::1]`` → ``::1``); anything else as it is."""
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def _in_networks(host: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: never resolved just to compare it
        return False
    return any(address in network for network in networks)


class Egress:
    """Routes and trust for upstream connections (see the module doc). Cheap to build: no I/O."""

    def __init__(
        self,
        *,
        https_proxy: str | None = None,
        http_proxy: str | None = None,
        no_proxy: str | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        self.https_proxy = parse_proxy_url(https_proxy) if https_proxy else None
        self.http_proxy = parse_proxy_url(http_proxy) if http_proxy else None
        self.no_proxy = NoProxy(no_proxy)
        self.ca_bundle = ca_bundle
        self._tls: ssl.SSLContext | None = None
        self._routes: dict[str, ProxyServer | None] = {}  # per scheme://authority: a handful

    def proxy_for(self, scheme: str, host: str, port: int) -> ProxyServer | None:
        proxy = self.https_proxy if scheme == "https" else self.http_proxy
        if proxy is None or self.no_proxy.bypass(host, port):
            return None
        return proxy

    def route(self, url: str) -> ProxyServer | None:
        """The proxy for an absolute http(s) URL, or None: direct. Cached per origin (the
        upstream origins come from settings, never from a client)."""
        scheme, _, rest = url.partition("://")
        key = f"{scheme}://{rest.partition('/')[0]}"
        try:
            return self._routes[key]
        except KeyError:
            parts = urlsplit(key)
            port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
            route = self._routes[key] = self.proxy_for(scheme, parts.hostname or "", port)
            return route

    def describe(self, url: str) -> str:
        """How ``url`` is reached, for the log: ``direct`` or ``via proxy http://host:port``."""
        proxy = self.route(url)
        return "direct" if proxy is None else f"via proxy {proxy.url}"

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            cafile = str(self.ca_bundle) if self.ca_bundle is not None else None
            self._tls = ssl.create_default_context(cafile=cafile)
        return self._tls
