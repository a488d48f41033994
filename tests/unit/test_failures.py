"""The proxy's own error vocabulary and how each provider renders it (what an agent's SDK reads)."""

from __future__ import annotations

import json

import pytest

from proxy.failures import Failure
from proxy.providers import anthropic, openai

# failure: (HTTP status, Anthropic error.type, OpenAI error.type, OpenAI error.code)
RENDERED = {
    Failure.BAD_REQUEST: (400, "invalid_request_error", "invalid_request_error", None),
    Failure.NOT_FOUND: (404, "not_found_error", "invalid_request_error", None),
    Failure.UNAUTHORIZED: (401, "authentication_error", "invalid_request_error", "invalid_api_key"),
    Failure.NOT_CONFIGURED: (500, "api_error", "server_error", "no_company_key"),
    Failure.CLIENT_TIMEOUT: (408, "timeout_error", "invalid_request_error", "request_timeout"),
    Failure.BODY_TOO_LARGE: (
        413,
        "request_too_large",
        "invalid_request_error",
        "request_too_large",
    ),
    Failure.HEAD_TOO_LARGE: (
        431,
        "request_too_large",
        "invalid_request_error",
        "request_too_large",
    ),
    Failure.UPSTREAM_UNREACHABLE: (502, "api_error", "server_error", "upstream_unreachable"),
    Failure.OVERLOADED: (503, "overloaded_error", "server_error", "proxy_overloaded"),
    Failure.UPSTREAM_TIMEOUT: (504, "timeout_error", "server_error", "upstream_timeout"),
    Failure.SPEND_LIMIT: (429, "billing_error", "insufficient_quota", "insufficient_quota"),
}


def test_every_failure_is_rendered() -> None:
    assert set(RENDERED) == set(Failure)


@pytest.mark.parametrize("failure", list(Failure), ids=str)
def test_each_provider_renders_a_failure_in_its_own_format(failure: Failure) -> None:
    status, anthropic_type, openai_type, openai_code = RENDERED[failure]
    assert failure.status == status
    assert json.loads(anthropic.error_body(failure, "tokenmeter: m")) == {
        "type": "error",
        "error": {"type": anthropic_type, "message": "tokenmeter: m"},
    }
    assert json.loads(openai.error_body(failure, "tokenmeter: m")) == {
        "error": {
            "message": "tokenmeter: m",
            "type": openai_type,
            "param": None,
            "code": openai_code,
        }
    }
