"""Reading a subscription's plan windows from the unified rate-limit headers (proxy/quota.py)."""

from __future__ import annotations

from proxy.quota import read_quota
from proxy.usage import QuotaReading


def test_windows_are_read_with_their_utilization_reset_and_status() -> None:
    headers = {
        "anthropic-ratelimit-unified-5h-utilization": "0.42",
        "anthropic-ratelimit-unified-5h-reset": "1795000000",
        "anthropic-ratelimit-unified-5h-status": "allowed_warning",
        "anthropic-ratelimit-unified-7d-sonnet-utilization": "0.02",
    }
    assert read_quota(headers.get) == (
        QuotaReading("5h", 0.42, 1_795_000_000.0, "allowed_warning"),
        QuotaReading("7d_sonnet", 0.02, None, None),
    )


def test_what_is_not_a_known_window_or_a_number_is_skipped() -> None:
    headers = {
        "anthropic-ratelimit-unified-5h-utilization": "lots",
        "anthropic-ratelimit-unified-5h-reset": "-5",
        "anthropic-ratelimit-unified-5h-status": "weird",
        "anthropic-ratelimit-unified-9y-utilization": "0.5",
        "anthropic-ratelimit-unified-7d-utilization": "nan",
    }
    assert read_quota(headers.get) == ()
    none: dict[str, str] = {}
    assert read_quota(none.get) == ()
