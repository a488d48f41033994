"""`tokenmeter serve --workers 2` as a user runs it: every worker meters, /metrics sums them all,
pay has one series per person whichever worker took a change, and nothing is left in /tmp."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from anthropic.types.message_create_params import MessageCreateParamsBase

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread, free_port

# A request as the SDK types it: `claude.messages.create(**BODY)` is checked key by key.
BODY: MessageCreateParamsBase = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}


METRICS_TOKEN = "workers-metrics-token-0123"
SCRAPE = {"authorization": f"Bearer {METRICS_TOKEN}"}


@contextlib.contextmanager
def serving(tmp_path: Path, **extra_env: str) -> Iterator[str]:
    """``tokenmeter serve --workers 2`` in front of a fake Anthropic, until the block ends and
    SIGTERM has stopped it (its temporary files go to ``tmp_path/tmp``)."""
    fake = FakeAnthropic()
    (tmp_path / "tmp").mkdir(exist_ok=True)
    with ServerThread(fake) as upstream:
        port = free_port()
        env = {
            **os.environ,
            "TMPDIR": str(tmp_path / "tmp"),
            "TOKENMETER_ANTHROPIC_UPSTREAM": upstream.url,
            "TOKENMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/tm.db",
            "TOKENMETER_SPOOL_DIR": str(tmp_path / "spool"),
            "TOKENMETER_RECORDER_FLUSH_INTERVAL_S": "0.05",
            **extra_env,
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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path) as url:
        yield url


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


def _pay_series(text: str, user: str) -> list[str]:
    """Every pay sample line naming ``user``: person-team membership and personal pay."""
    names = ("tokenmeter_person_team_info", "tokenmeter_annual_compensation_usd")
    return [
        line for line in text.splitlines() if line.startswith(names) and f'user="{user}"' in line
    ]


def _scrape_each_worker(url: str) -> dict[int, str]:
    """One /metrics text per worker (new connections until both workers answered)."""
    texts: dict[int, str] = {}
    for _ in range(100):
        with httpx.Client(base_url=url, headers=SCRAPE) as client:
            pid = client.get("/healthz").json()["pid"]
            if pid not in texts:
                # same connection, same worker: uvicorn keeps a connection on one process
                texts[pid] = client.get("/metrics").text
        if len(texts) == 2:
            return texts
    raise AssertionError("one worker never answered")


def test_a_team_change_leaves_one_pay_series_per_person_and_the_metrics_dir_is_removed(
    tmp_path: Path,
) -> None:
    env = {"TOKENMETER_METRICS_TOKEN": METRICS_TOKEN, "TOKENMETER_METRICS_PERSONAL_PAY": "true"}
    dave = {"annual_compensation": "180000", "effective_from": "2026-01-01"}
    with serving(tmp_path, **env) as url:
        assert [p.name for p in (tmp_path / "tmp").iterdir()][0].startswith("tokenmeter-metrics-")
        put = httpx.put(f"{url}/api/v1/people/dave", json=dave | {"team": "search"})
        assert put.status_code == 200, put.text
        erin = {"annual_compensation": "100000", "team": "research", "effective_from": "2026-01-01"}
        assert httpx.put(f"{url}/api/v1/people/erin", json=erin).status_code == 200
        _wait_for_every_worker(url, 'tokenmeter_person_team_info{team="search",user="dave"}')
        put = httpx.put(f"{url}/api/v1/people/dave", json=dave | {"team": "research"})
        assert put.status_code == 200, put.text
        texts = _wait_for_every_worker(
            url, 'tokenmeter_person_team_info{team="research",user="dave"}'
        )
    for text in texts.values():
        assert _pay_series(text, "dave") == [
            'tokenmeter_person_team_info{team="research",user="dave"} 1.0',
            'tokenmeter_annual_compensation_usd{team="research",user="dave"} 180000.0',
        ]
        assert 'tokenmeter_team_annual_compensation_usd{team="research"} 280000.0' in text
        assert 'team="search"' not in text  # search has nobody left: no stale total either
    assert list((tmp_path / "tmp").iterdir()) == []  # the multiprocess files went with it


def _wait_for_every_worker(url: str, line: str) -> dict[int, str]:
    """Scrape both workers until each shows ``line``; every scrape on the way must show one
    series per person (before the change reaches a worker: the old one)."""
    deadline = time.monotonic() + 20
    while True:
        texts = _scrape_each_worker(url)
        for text in texts.values():
            for user in ("dave", "erin"):
                assert len(_pay_series(text, user)) in (0, 2), _pay_series(text, user)
        if all(line in text for text in texts.values()):
            return texts
        assert time.monotonic() < deadline, texts
        time.sleep(0.5)
