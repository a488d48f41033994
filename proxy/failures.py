"""What went wrong when tokenmeter answers a request itself: the proxy's own error vocabulary.

Most errors an agent sees come from upstream and pass through untouched. The few the proxy makes
itself (a request it refuses, an upstream it cannot reach, a client too slow) are named here once,
each with the HTTP status the client gets. The forwarder (``proxy/forward.py``), request intake
(``proxy/intake.py``) and the server protocol (``proxy/serving.py``) speak only this vocabulary;
each provider renders a ``Failure`` in its own error JSON (``Provider.error_body``: Anthropic's
``error.type``, OpenAI's ``type`` and ``code``), so no provider translates another's words.

A leaf: imports nothing of tokenmeter.
"""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    """One thing that went wrong, answered by tokenmeter with ``status``."""

    BAD_REQUEST = "bad_request"  # path, query, attribution value or HTTP framing refused
    NOT_FOUND = "not_found"  # a path no provider serves
    UNAUTHORIZED = "unauthorized"  # a tokenmeter key refused, or none where one is required
    NOT_CONFIGURED = "not_configured"  # a tokenmeter key, but no company key to send upstream
    CLIENT_TIMEOUT = "client_timeout"  # the request head or body did not arrive in time
    BODY_TOO_LARGE = "body_too_large"  # request body past TOKENMETER_MAX_BODY_MB
    HEAD_TOO_LARGE = "head_too_large"  # request line and headers past TOKENMETER_MAX_HEADER_KB
    UPSTREAM_UNREACHABLE = "upstream_unreachable"  # connect error, refused CONNECT, bad TLS
    OVERLOADED = "overloaded"  # more requests in flight than TOKENMETER_MAX_IN_FLIGHT
    UPSTREAM_TIMEOUT = "upstream_timeout"  # upstream did not answer in time
    SPEND_LIMIT = "spend_limit"  # a hard budget is spent, or cannot be checked (fail closed)

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return _STATUS[self]


_STATUS: dict[Failure, int] = {
    Failure.BAD_REQUEST: 400,
    Failure.NOT_FOUND: 404,
    Failure.UNAUTHORIZED: 401,
    Failure.NOT_CONFIGURED: 500,
    Failure.CLIENT_TIMEOUT: 408,
    Failure.BODY_TOO_LARGE: 413,
    Failure.HEAD_TOO_LARGE: 431,
    Failure.UPSTREAM_UNREACHABLE: 502,
    Failure.OVERLOADED: 503,
    Failure.SPEND_LIMIT: 429,
    Failure.UPSTREAM_TIMEOUT: 504,
}
