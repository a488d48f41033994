"""How a request is billed, from its headers alone (proxy/billing.py)."""

from __future__ import annotations

import pytest

from proxy.billing import Billing, classify

OAUTH = b"Bearer sk-ant-oat01-abcdef"
BETA = b"oauth-2025-04-20"


@pytest.mark.parametrize(
    ("headers", "billing"),
    [
        ({b"authorization": OAUTH, b"anthropic-beta": BETA}, Billing.SUBSCRIPTION),
        (  # Claude Code sends the flag among others
            {b"authorization": OAUTH, b"anthropic-beta": b"claude-code-20250219, " + BETA},
            Billing.SUBSCRIPTION,
        ),
        (
            {b"authorization": b"bearer sk-ant-oat01-x", b"anthropic-beta": BETA},
            Billing.SUBSCRIPTION,
        ),
        # The prefix alone is not proof, nor is the flag alone.
        ({b"authorization": OAUTH}, Billing.UNKNOWN),
        ({b"authorization": OAUTH, b"anthropic-beta": b"oauth-2025-04-20x"}, Billing.UNKNOWN),
        ({b"anthropic-beta": BETA}, Billing.UNKNOWN),
        (
            {b"authorization": b"Bearer eyJhbGciOi.wif.token", b"anthropic-beta": BETA},
            Billing.UNKNOWN,
        ),
        ({b"x-api-key": b"sk-ant-api03-k"}, Billing.API_KEY),
        # apiKeyHelper sends the key in both headers: the key is what upstream bills.
        (
            {b"x-api-key": b"sk-ant-api03-k", b"authorization": b"Bearer sk-ant-api03-k"},
            Billing.API_KEY,
        ),
        ({b"authorization": b"Bearer sk-proj-openai"}, Billing.API_KEY),
        ({}, Billing.UNKNOWN),
        ({b"authorization": b"Basic dXNlcjpwYXNz"}, Billing.UNKNOWN),
    ],
)
def test_classify(headers: dict[bytes, bytes], billing: Billing) -> None:
    assert classify(headers) is billing
