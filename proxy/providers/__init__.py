"""Provider adapters: which paths each serves, its usage tap, its error JSON.

A ``Provider`` is plain data handed to the forwarder by ``create_app``; each provider module
(``anthropic``, ``openai``) supplies the functions. The forwarder knows nothing of any provider's
wire format: it feeds raw response chunks to the provider's ``UsageTap`` and asks it for the
``ResponseFacts`` when the exchange ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.usage import ResponseFacts


class UsageTap(Protocol):
    """Reads usage out of a response body as it streams past; never raises from ``feed``."""

    def feed(self, chunk: bytes) -> None: ...

    def result(self) -> ResponseFacts: ...


TapFactory = Callable[[str | None, str | None], UsageTap]
"""(content-type, content-encoding) of the upstream response -> a fresh tap."""

RequestRewriter = Callable[[str, bytes, dict[str, str]], bytes]
"""(path, request body, response notes) -> the body to send upstream; notes reach the tap."""


@dataclass(frozen=True, slots=True)
class Provider:
    """One upstream API: where it lives and how its traffic is metered."""

    name: str
    upstream: str
    prefix: str  # path prefix that selects this provider ("" = the default provider)
    is_metered: Callable[[str, str], bool]  # (method, path) -> does the body carry usage?
    make_tap: TapFactory
    error_body: Callable[[int, str, str], bytes]  # (status, error type, message) -> JSON bytes
