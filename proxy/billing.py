"""How a request is billed, read from its credentials: the ``billing`` column of every event.

``classify(headers)`` sorts a request into one ``Billing`` class, from the request headers only
(lower-case names), with no I/O: it runs once per request on the hot path.

- ``subscription``: a claude.ai login (Pro, Max, Team, Enterprise seat). Claude Code sends the
  login's OAuth access token as ``Authorization: Bearer sk-ant-oat…`` together with the OAuth
  beta flag ``anthropic-beta: oauth-2025-04-20`` (Claude Code's gateway documentation: with only
  ``ANTHROPIC_BASE_URL`` set, the subscription login stays active and its traffic carries the
  OAuth bearer and an OAuth ``anthropic-beta`` value). Both are required: the token prefix alone
  is not proof (workload-identity tokens are bearer tokens too), and the flag alone names no
  credential. The seat is the token's salted fingerprint (``attribution.fingerprint``); the
  token itself never leaves the attribution module.
- ``api_key``: a provider API key, per-token billing: ``x-api-key`` (Anthropic; Claude Code's
  ``apiKeyHelper`` sends it beside a bearer, and the key is what upstream bills), or a bearer
  that is an API key (``sk-…`` that is not an OAuth token: OpenAI's ``Authorization`` header).
- ``tokenmeter_key`` / ``oidc``: a tokenmeter-issued key or a single sign-on token, which the
  proxy swaps for the company's API key (per-token billing, paid). ``classify`` cannot see
  these (a ``tmk_`` key looks like any key); the forwarder sets them from the verified identity
  (``BY_IDENTITY``).
- ``unknown``: anything else (no credential, a bearer of another kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

OAUTH_TOKEN_PREFIX = b"sk-ant-oat"
OAUTH_BETA = b"oauth-2025-04-20"
_API_KEY_PREFIX = b"sk-"


class Billing(StrEnum):
    """How the upstream bills a request (stored per event; a bounded metric label)."""

    API_KEY = "api_key"
    SUBSCRIPTION = "subscription"
    TOKENMETER_KEY = "tokenmeter_key"
    OIDC = "oidc"
    UNKNOWN = "unknown"


# The billing class of a request whose credential the proxy verified, by the identity's source.
BY_IDENTITY = {"key": Billing.TOKENMETER_KEY, "oidc": Billing.OIDC}


def _bearer(headers: Mapping[bytes, bytes]) -> bytes | None:
    auth = headers.get(b"authorization")
    if auth and auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return None


def _has_oauth_beta(headers: Mapping[bytes, bytes]) -> bool:
    flags = headers.get(b"anthropic-beta", b"")
    return OAUTH_BETA in (flag.strip() for flag in flags.split(b","))


def classify(headers: Mapping[bytes, bytes]) -> Billing:
    """The billing class of a request with these (lower-case) headers (module doc)."""
    if headers.get(b"x-api-key"):
        return Billing.API_KEY
    token = _bearer(headers)
    if not token:
        return Billing.UNKNOWN
    if token.startswith(OAUTH_TOKEN_PREFIX):
        return Billing.SUBSCRIPTION if _has_oauth_beta(headers) else Billing.UNKNOWN
    if token.startswith(_API_KEY_PREFIX):
        return Billing.API_KEY
    return Billing.UNKNOWN
