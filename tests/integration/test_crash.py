"""``tokenmeter serve`` as a real process: killed with SIGKILL under load, stopped with SIGTERM.

The agents are real anthropic SDK clients in threads, the upstream the fake Anthropic, the
database a throwaway PostgreSQL one. Whatever the process was doing when it died, every request
that got an answer must be in the database exactly once after a restart: counted, and its
tokens summed, against what the fake upstream served.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.ledger import Ledger, agent_turn, answered_by, recorded, served_by
from tests.servers import ServerThread, free_port

pytestmark = pytest.mark.postgres


class Served:
    """One ``tokenmeter serve`` process at a time, on one port, over one spool directory."""

    def __init__(self, tmp_path: Path, upstream: str, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.spool = tmp_path / "spool"
        self.log_path = tmp_path / "serve.log"
        self.log = self.log_path.open("ab")
        self.env = {
            **os.environ,
            "TOKENMETER_ANTHROPIC_UPSTREAM": upstream,
            "TOKENMETER_DATABASE_URL": database_url,
            "TOKENMETER_SPOOL_DIR": str(self.spool),
            "TOKENMETER_RECORDER_FLUSH_INTERVAL_S": "0.05",
            "TOKENMETER_RECORDER_RETRY_MAX_S": "0.5",
            **env,
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "proxy.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "tokenmeter serve exited early"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("tokenmeter serve did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 60) -> float:
        """SIGTERM; seconds until the process exited, after a complete graceful shutdown
        (uvicorn re-raises the signal once it is done, hence -SIGTERM)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=timeout_s) in (0, -signal.SIGTERM)
        took = time.monotonic() - began
        self.log.flush()
        log = self.log_path.read_text()
        last = f"Stopping parent process [{self.proc.pid}]"  # with --workers N
        if last not in log:
            last = f"Finished server process [{self.proc.pid}]"
            assert "Application shutdown complete." in log.rsplit("Started server process", 1)[1]
        assert log.rstrip().endswith(last), log[-2000:]
        return took

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def leftover_segments(self) -> list[Path]:
        return sorted(p for p in self.spool.glob("*.jsonl") if p.name != "quarantine.jsonl")


@pytest.fixture
def fake() -> Iterator[tuple[FakeAnthropic, str]]:
    upstream = FakeAnthropic(pause_s=0.25)
    with ServerThread(upstream) as server:
        yield upstream, server.url


@pytest.fixture
def make_served(tmp_path: Path, fake: tuple[FakeAnthropic, str], pg_url: str) -> Iterator[Any]:
    started: list[Served] = []

    def make(**env: str) -> Served:
        served = Served(tmp_path, fake[1], pg_url, **env)
        started.append(served)
        return served

    yield make
    for served in started:
        served.close()


class Agents:
    """``n`` agent threads sending turns until told to stop; what got an answer."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.n = url, n
        self.answered: list[Any] = []
        self.failed = 0
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(n)
        self._runs = [self._pool.submit(self._run, seed) for seed in range(n)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with anthropic.Anthropic(base_url=self.url, api_key="sk-ant-k", max_retries=0) as client:
            while not self._stop.is_set():
                try:
                    self.answered.append(agent_turn(client, rng, stream=rng.random() < 0.5))
                except Exception:  # refused, or cut mid-stream (the SDK's transport error)
                    self.failed += 1  # no answer: nothing the agent could count on
                    time.sleep(0.02)

    def wait_for(self, answered: int) -> None:
        while len(self.answered) < answered:
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for run in self._runs:
            run.result()
        self._pool.shutdown()


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _hold_table_lock(url: str, seconds: float) -> None:
    session = await asyncpg.connect(_plain(url))
    await session.execute("BEGIN; LOCK TABLE usage_hourly IN ACCESS EXCLUSIVE MODE")
    await asyncio.sleep(seconds)  # the proxy answers meanwhile; its writes hang on the lock
    await session.close()


def stored(url: str) -> dict[str, tuple[int, tuple[int, int, int]]]:
    return asyncio.run(recorded(url))


def wait_until_stored(url: str, answered: list[Any], timeout_s: float = 60) -> None:
    """Until every answered message is in the database: the store catches up on its own
    (what a killed process wrote ahead is shipped by the next one). Checked before the final
    SIGTERM, whose last flush gets one write timeout (1 s here) and leaves what a loaded
    machine did not write in time to the next start: not lost, but not what these tests are
    about (test_sigterm_with_a_hung_database_exits_and_the_restart_replays is)."""
    wanted = {message.id for message in answered}
    deadline = time.monotonic() + timeout_s
    while not wanted <= set(stored(url)):
        missing = len(wanted - set(stored(url)))
        assert time.monotonic() < deadline, f"{missing} answered events never reached the database"
        time.sleep(0.2)


def test_kill_9_under_load_loses_and_doubles_nothing(
    make_served: Any, fake: tuple[FakeAnthropic, str], pg_url: str
) -> None:
    """2,000+ requests, SIGKILL three times at random points (once while the database hangs
    on a table lock), restarted each time; then every answer is stored exactly once."""
    rng = random.Random()
    served = make_served(TOKENMETER_DB_WRITE_TIMEOUT_S="1")
    served.start()
    agents = Agents(served.url, 6)
    try:
        for kill, target in enumerate(sorted(rng.sample(range(300, 1800), 3))):
            agents.wait_for(target)
            if kill == 1:
                asyncio.run(_hold_table_lock(pg_url, rng.uniform(0.3, 1.0)))
            time.sleep(rng.uniform(0, 0.05))
            served.kill()
            served.start()
        agents.wait_for(2000)
    finally:
        agents.stop()
    wait_until_stored(pg_url, agents.answered)
    served.terminate()
    ledger = Ledger(answered_by(agents.answered), served_by(fake[0].served), {})
    ledger.stored = stored(pg_url)
    print(ledger.row(f"kill -9 x3 ({agents.failed} requests refused while down)"))
    assert len(ledger.answered) >= 2000
    assert ledger.lost == 0
    assert ledger.duplicates == 0
    assert set(ledger.stored) <= set(ledger.served)  # nothing the upstream did not serve
    for message_id, tokens in ledger.answered.items():
        assert ledger.stored[message_id] == (1, tokens)
    assert served.leftover_segments() == []


def test_a_killed_worker_s_events_are_adopted_by_the_worker_that_replaces_it(
    make_served: Any, fake: tuple[FakeAnthropic, str], pg_url: str
) -> None:
    """``serve --workers 2``: each worker writes ahead to its own files; one is killed with
    SIGKILL under load and uvicorn starts another, which adopts the dead worker's files."""
    served = make_served(TOKENMETER_WORKERS="2", TOKENMETER_DB_WRITE_TIMEOUT_S="1")
    served.start()
    agents = Agents(served.url, 4)

    async def kill_while_writes_hang() -> int:
        session = await asyncpg.connect(_plain(pg_url))
        await session.execute("BEGIN; LOCK TABLE usage_hourly IN ACCESS EXCLUSIVE MODE")
        await asyncio.to_thread(agents.wait_for, len(agents.answered) + 100)  # none shipped
        health = await asyncio.to_thread(httpx.get, f"{served.url}/healthz")
        victim: int = health.json()["pid"]
        os.kill(victim, signal.SIGKILL)
        await session.close()
        return victim

    try:
        agents.wait_for(200)
        victim = asyncio.run(kill_while_writes_hang())
        agents.wait_for(600)
    finally:
        agents.stop()
    wait_until_stored(pg_url, agents.answered)
    served.terminate()
    ledger = Ledger(answered_by(agents.answered), served_by(fake[0].served), stored(pg_url))
    print(ledger.row(f"--workers 2, one worker kill -9 ({agents.failed} refused)"))
    assert ledger.lost == 0
    assert ledger.duplicates == 0
    assert all(ledger.stored[k] == (1, v) for k, v in ledger.answered.items())
    assert served.leftover_segments() == []
    assert f"Child process [{victim}] died" in served.log_path.read_text()


def _stream(url: str, scenario: str) -> Any:
    with (
        anthropic.Anthropic(base_url=url, api_key="k", max_retries=0) as client,
        client.messages.stream(
            model="claude-opus-4-8",
            max_tokens=9,
            messages=[{"role": "user", "content": "take your time"}],
            extra_headers={"x-fake-scenario": scenario},
        ) as events,
    ):
        return events.get_final_message()


def test_sigterm_lets_open_streams_finish_within_the_grace_period(
    make_served: Any, fake: tuple[FakeAnthropic, str], pg_url: str
) -> None:
    """At SIGTERM, streams that end within TOKENMETER_SHUTDOWN_GRACE_S run to their end; one
    that would outlast it is cut when it expires (the process does not wait for it); then
    every exchange, the cut one too, is in the database."""
    served = make_served(TOKENMETER_SHUTDOWN_GRACE_S="4")
    served.start()
    results: list[Any] = []
    errors: list[Exception] = []

    def agent(scenario: str) -> None:
        try:
            results.append(_stream(served.url, scenario))
        except Exception as exc:  # the SDK's transport error for a cut stream
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(s,)) for s in ["slow"] * 4 + ["hang"]]
    for thread in threads:
        thread.start()
    while len(fake[0].sent_at) < 10:  # every stream open and flowing (an event every 0.25 s)
        time.sleep(0.01)
    took = served.terminate()
    for thread in threads:
        thread.join()
    assert (len(results), len(errors)) == (4, 1)  # four whole streams; the hung one cut
    assert 3.5 < took < 20  # the grace period and the flush, not the hung stream's 30 s
    ids = set(stored(pg_url))
    assert len(ids) == 5
    assert {m.id for m in results} < ids
    assert served.leftover_segments() == []


def test_sigterm_with_a_hung_database_exits_and_the_restart_replays(
    make_served: Any, fake: tuple[FakeAnthropic, str], pg_url: str
) -> None:
    """A table lock makes every write hang: SIGTERM still ends the process within one write
    timeout, the events wait in the spool, and the next start writes them once."""
    served = make_served(TOKENMETER_DB_WRITE_TIMEOUT_S="1")
    served.start()

    async def locked_while_serving() -> list[Any]:
        lock = await asyncpg.connect(_plain(pg_url))
        await lock.execute("BEGIN; LOCK TABLE usage_hourly IN ACCESS EXCLUSIVE MODE")
        answered = await asyncio.to_thread(serve_and_stop)
        await lock.close()
        return answered

    def serve_and_stop() -> list[Any]:
        with anthropic.Anthropic(base_url=served.url, api_key="k", max_retries=0) as client:
            rng = random.Random(5)
            answered = [agent_turn(client, rng, stream=i % 2 == 0) for i in range(40)]
        took = served.terminate(timeout_s=30)
        assert took < 15  # one write timeout and the shutdown, not the lock's lifetime
        assert served.leftover_segments() != []  # the events wait in the spool
        return answered

    answered = asyncio.run(locked_while_serving())
    served.start()
    deadline = time.monotonic() + 20
    while len(stored(pg_url)) < len(answered):
        assert time.monotonic() < deadline, "spooled events not replayed after the restart"
        time.sleep(0.1)
    served.terminate()
    ledger = Ledger(answered_by(answered), served_by(fake[0].served), stored(pg_url))
    print(ledger.row("SIGTERM with a hung database, then restart"))
    assert ledger.stored == {k: (1, v) for k, v in ledger.served.items()}
    assert served.leftover_segments() == []
