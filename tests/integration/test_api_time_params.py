"""Time parameters: a date-time without an offset means UTC, one with an offset is converted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anthropic
from anthropic.types.message_create_params import MessageCreateParamsBase

from tests.conftest import Proxy

# A request as the SDK types it: `claude.messages.create(**BODY)` is checked key by key.
BODY: MessageCreateParamsBase = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}


def test_naive_and_offset_times_select_the_same_window(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    claude.messages.create(**BODY, extra_headers={"x-tokenmeter-task": "t-time"})
    proxy.task("t-time", 1)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    naive = (hour - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    shifted = (hour - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    later = (hour + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    for path in ("/api/v1/usage", "/api/v1/reports/blended", "/api/v1/tasks"):
        for start in (naive, shifted, naive + "+00:00"):
            r = proxy.http.get(path, params={"start": start})
            assert r.status_code == 200, (path, start, r.text)
        r = proxy.http.get(path, params={"start": later})
        assert r.status_code == 200
    assert shifted.endswith("+02:00")
    inside = proxy.http.get("/api/v1/usage", params={"start": naive}).json()["total"]
    after = proxy.http.get("/api/v1/usage", params={"start": later}).json()["total"]
    assert (inside["requests"], after["requests"]) == (1, 0)
