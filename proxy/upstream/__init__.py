"""The upstream clients: one contract, its implementations, chosen in one place.

Laid out like httpx's ``_transports/``: ``base`` holds the contract and the error tree (a leaf);
``http11`` (the default), ``aiohttp`` and ``httpx`` implement it; ``mock`` answers in-process,
for fast forwarder tests (no socket). Which client runs is decided by ``proxy.app.make_upstream``
alone, the only importer of an implementation: it imports a library client only when selected
(aiohttp and httpx weigh ~25 MB of RSS that a proxy on the default client never needs).

The package re-exports the contract (``from proxy.upstream import Upstream, UpstreamError``)
and imports no implementation.
"""

from proxy.upstream.base import (
    RawHeaders,
    Timeouts,
    Upstream,
    UpstreamBroken,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)

__all__ = [
    "RawHeaders",
    "Timeouts",
    "Upstream",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
