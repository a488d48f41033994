"""Replay the requests captured from the real Claude Code CLI through the proxy.

Bodies in the capture are trimmed, so each replay sends a valid body for the same model with
``stream: true`` (Claude Code always streams); headers, path and query are exactly as captured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

import httpx

from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread

TRAFFIC = Path(__file__).parents[1] / "fixtures" / "claude-code-traffic.jsonl"
NOT_FORWARDED = {"host", "content-length", "connection"}


class Captured(TypedDict):
    """One request of the capture (the fields these tests read)."""

    method: str
    raw_path: str
    headers: list[list[str]]  # [name, value] pairs, in the order sent
    body: dict[str, Any]


def captured_posts() -> list[Captured]:
    records: list[Captured] = [json.loads(line) for line in TRAFFIC.read_text().splitlines()]
    return [r for r in records if r["method"] == "POST"]


def session_of(record: Captured) -> str:
    headers = {k.lower(): v for k, v in record["headers"]}
    return str(headers["x-claude-code-session-id"])


def test_every_captured_request_is_forwarded_intact_and_attributed(
    proxy: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    fake, _ = upstream
    posts = captured_posts()
    for record in posts:
        headers = [(k, v) for k, v in record["headers"] if k.lower() not in NOT_FORWARDED]
        model = record["body"]["model"]
        body = json.dumps(
            {
                "model": model,
                "max_tokens": 32000,
                "stream": True,
                "messages": [{"role": "user", "content": "say hi"}],
            }
        ).encode()
        r = httpx.post(f"{proxy.url}{record['raw_path']}", content=body, headers=headers)
        assert r.status_code == 200
        assert r.text.rstrip().endswith('data: {"type":"message_stop"}')
        sent = fake.requests[-1]
        assert sent.path == "/v1/messages"  # any /t/… prefix removed
        assert sent.query == b"beta=true"
        for name, value in headers:
            assert sent.header(name) == value, name  # anthropic-beta, x-api-key, x-app, …
    sessions = {session_of(r) for r in posts}
    for session in sessions - {"66666666-6666-4666-8666-666666666666"}:
        task = proxy.task(session, 1)  # no task header: the session is the task
        assert task["sessions"] == [session]
    prefixed = proxy.task("demo-42", 1)  # ANTHROPIC_BASE_URL=…/t/demo-42
    assert prefixed["sessions"] == ["66666666-6666-4666-8666-666666666666"]
    total = proxy.http.get("/api/v1/usage", params={"group_by": "model"}).json()["total"]
    assert total["requests"] == len(posts)
    assert total["tokens"]["cache_write_1h"] == 20 * len(posts)
