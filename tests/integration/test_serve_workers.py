"""`tokenmeter serve --workers 2` as a user runs it: every worker meters, /metrics sums them all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread, free_port

BODY = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    fake = FakeAnthropic()
    with ServerThread(fake) as upstream:
        port = free_port()
        env = {
            **os.environ,
            "TOKENMETER_ANTHROPIC_UPSTREAM": upstream.url,
            "TOKENMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/tm.db",
            "TOKENMETER_SPOOL_DIR": str(tmp_path / "spool"),
            "TOKENMETER_RECORDER_FLUSH_INTERVAL_S": "0.05",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [
            sys.executable,
            "-m",
            "proxy.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        proc = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc)
            yield url
        finally:
            proc.terminate()
            output = proc.communicate(timeout=30)[0].decode()
            assert "Traceback" not in output, output


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "tokenmeter serve exited early"
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("tokenmeter serve --workers 2 did not become ready")


def _requests_total(text: str) -> float:
    pattern = r'^tokenmeter_requests_total\{[^}]*status="ok"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def test_two_workers_meter_and_expose_one_total(served: str) -> None:
    pids = set()
    for _ in range(40):
        with httpx.Client() as client:
            pids.add(client.get(f"{served}/healthz").json()["pid"])
    assert len(pids) == 2  # both workers take connections
    n = 20
    for _ in range(n):  # new connections: the kernel spreads them over both workers
        with httpx.Client() as client:
            r = client.post(f"{served}/v1/messages", json=BODY, headers={"x-tokenmeter-task": "w"})
            assert r.status_code == 200
    for _ in range(4):  # whichever worker answers, it reports both workers' counters
        with httpx.Client() as client:
            assert _requests_total(client.get(f"{served}/metrics").text) == n
    deadline = time.monotonic() + 10
    while (task := httpx.get(f"{served}/api/v1/tasks/w").json()).get("requests", 0) < n:
        assert time.monotonic() < deadline, task
        time.sleep(0.1)
    assert task["requests"] == n
    assert task["tokens"]["cache_read"] == 300 * n
