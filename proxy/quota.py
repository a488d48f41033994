"""A subscription's plan limits, read from the response: the unified rate-limit headers.

Anthropic answers requests made with a claude.ai login (``proxy.billing``: ``subscription``)
with headers that say how much of each plan window is used, the figures Claude Code's status
line shows: ``anthropic-ratelimit-unified-<window>-utilization`` (a fraction, 0..1),
``-reset`` (Unix seconds) and ``-status`` (``allowed``, ``allowed_warning``, ``rejected``), for
the 5-hour window (``5h``), the weekly one (``7d``) and per-model weekly windows. These headers
are not in Anthropic's API reference; their shape is the one client implementations and proxies
read (api-facts §3.2), so anything unexpected is skipped, never guessed.

``read_quota(header)`` turns them into ``QuotaReading``s for the metrics (one gauge per seat
holder and window). Only the windows in ``WINDOWS`` are kept, so the ``window`` label is bounded
whatever an answer carries. Pure, cheap: a handful of dict lookups per seat response.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from proxy.usage import QuotaReading

PREFIX = "anthropic-ratelimit-unified-"
# The windows seen in subscription answers ("7d-sonnet" is also sent as "7d_sonnet").
WINDOWS: tuple[str, ...] = ("5h", "7d", "7d_opus", "7d_sonnet", "7d_oi", "overage")
STATUSES = frozenset({"allowed", "allowed_warning", "rejected"})


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _reading(window: str, header: Callable[[str], str | None]) -> QuotaReading | None:
    names = (window, window.replace("_", "-"))
    for name in dict.fromkeys(names):
        base = PREFIX + name
        utilization = _number(header(base + "-utilization"))
        reset_at = _number(header(base + "-reset"))
        status = (header(base + "-status") or "").strip().lower()
        kept = status if status in STATUSES else None
        if utilization is not None or reset_at is not None or kept is not None:
            return QuotaReading(window, utilization, reset_at, kept)
    return None


def read_quota(header: Callable[[str], str | None]) -> tuple[QuotaReading, ...]:
    """The plan windows a response's headers describe (``header(name)``: a header's value or
    None); () when it has none."""
    found = (_reading(window, header) for window in WINDOWS)
    return tuple(reading for reading in found if reading is not None)
