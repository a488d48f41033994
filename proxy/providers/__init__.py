"""Provider adapters: which paths each serves, its usage tap, its error JSON.

A ``Provider`` is plain data handed to the forwarder by ``create_app``; each provider module
(``anthropic``, ``openai``) supplies the functions. The forwarder knows nothing of any provider's
wire format: it feeds raw response chunks to the provider's ``UsageTap``, finishes it and asks it
for the ``ResponseFacts`` when the exchange ends. When the proxy answers a request itself, it
says what went wrong in its own vocabulary (``proxy.failures.Failure``) and the provider renders
that in its own error JSON (``error_body``). A provider that must change a request to meter it
(``prepare``) also supplies a ``ChunkFilter`` that removes the effect from the response, so the
client receives exactly what it would have received without the proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.failures import Failure
from proxy.usage import ResponseFacts


class UsageTap(Protocol):
    """Reads usage out of one response body as it streams past. The contract every tap keeps
    (``body.BodyTap`` keeps it for both providers; tests/unit/test_tap_contract.py checks it):

    - ``feed(chunk)`` for every raw chunk as it is forwarded, ``finish()`` once the body ended
      however it ended (done, cut, abandoned): it flushes what the decoders hold, so a last event
      without its blank line still counts. ``finish`` is idempotent.
    - ``result()`` at any time (the forwarder asks once, after ``finish``) returns a new
      ``ResponseFacts`` with ``metered`` set.
    - None of the three ever raises, whatever the body: the exchange's one event is built from
      ``result()``. What the tap could not read as it should is named in ``facts.problems``
      (``usage.Problem``); the meter adds ``usage_missing``; metrics count each in
      ``tokenmeter_usage_problems_total{provider,problem}`` and the recorder stores them.
    """

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> None: ...

    def result(self) -> ResponseFacts: ...


class ChunkFilter(Protocol):
    """Takes back out of a response what the proxy itself asked for (e.g. a usage-only chunk)."""

    def filter(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


TapFactory = Callable[[str | None, str | None], UsageTap]
"""(content-type, content-encoding) of the upstream response -> a fresh tap."""

Prepare = Callable[[str, str, bytes], tuple[bytes, Any]]
"""(method, path, request body) -> (the body to send upstream, a note for ``make_filter``)."""

FilterFactory = Callable[[Any, str | None, str | None], ChunkFilter | None]
"""(the note from ``prepare``, content-type, content-encoding) -> a filter, or None."""


@dataclass(frozen=True, slots=True)
class Provider:
    """One upstream API: where it lives and how its traffic is metered."""

    name: str
    upstream: str
    prefix: str  # path prefix that selects this provider ("" = the default provider)
    is_metered: Callable[[str, str], bool]  # (method, path) -> does the body carry usage?
    make_tap: TapFactory
    error_body: Callable[[Failure, str], bytes]  # (what went wrong, message) -> its error JSON
    # Where its API key goes: (header name, value prefix), e.g. (b"authorization", b"Bearer ").
    key_header: tuple[bytes, bytes] = (b"x-api-key", b"")
    # Only for providers whose metering needs the request changed (OpenAI's include_usage):
    prepare: Prepare | None = None
    make_filter: FilterFactory | None = None
