"""The server protocol finds its limits on the app it serves, through uvicorn's wrappers."""

from __future__ import annotations

from types import SimpleNamespace

from proxy.config import Settings
from proxy.failures import Failure
from proxy.serving import ServerLimits, hooks_of


def test_hooks_are_found_through_wrapping_middleware() -> None:
    hooks = SimpleNamespace(limits=ServerLimits(1, 2.0, 3.0, 4.0))
    app = SimpleNamespace(server_hooks=hooks)
    wrapped = SimpleNamespace(app=SimpleNamespace(app=app))  # e.g. ProxyHeadersMiddleware
    assert hooks_of(wrapped) is hooks


def test_an_app_without_hooks_gets_the_default_limits_and_plain_errors() -> None:
    hooks = hooks_of(SimpleNamespace(app=None))
    defaults = Settings.model_construct()
    assert hooks.limits == ServerLimits.from_settings(defaults)
    assert hooks.limits.max_header_bytes == defaults.max_header_kb * 1024 == 64 * 1024
    assert hooks.error_body(b"/x", Failure.CLIENT_TIMEOUT, "slow") == b'{"detail": "slow"}'
    hooks.count_timeout("head")  # counts nothing, fails nothing
    hooks.count_refused("bad_request")
