"""The recorder on SQLite and PostgreSQL: batching, outages, replays, and never losing count."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.engine import make_engine, upgrade
from proxy.store.quarantine import Quarantine
from proxy.store.recorder import Recorder
from proxy.store.rows import event_to_row, row_to_line
from proxy.store.spool import Spool
from proxy.store.tables import usage_events
from proxy.store.writes import write_batch
from proxy.usage import UsageEvent
from tests.dbfixtures import raw_totals, rollup_totals, terminate_backends
from tests.factories import make_event, sample_cost


class FakeMetrics:
    """Records what the recorder reports, as ``proxy.metrics`` would."""

    def __init__(self) -> None:
        self.depth = 0
        self.batches: list[int] = []
        self.spooled = self.dropped = self.replayed = self.quarantined = self.spool_errors = 0

    def set_queue_depth(self, n: int) -> None:
        self.depth = n

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batches.append(size)

    def add_spooled(self, n: int) -> None:
        self.spooled += n

    def add_dropped(self, n: int) -> None:
        self.dropped += n

    def add_replayed(self, n: int) -> None:
        self.replayed += n

    def add_quarantined(self, n: int) -> None:
        self.quarantined += n

    def add_spool_errors(self, n: int) -> None:
        self.spool_errors += n


async def _stored_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(usage_events.c.event_id))).scalars())


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(usage_events))).scalar_one()


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` for up to 10 s (the recorder's own tasks make it true)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 10 s")


def _submit(recorder: Recorder, n: int) -> list[UsageEvent]:
    events = [make_event() for _ in range(n)]
    for event in events:
        recorder.submit(event)
    return events


def _recorder(engine: AsyncEngine, spool_dir: Path, metrics: FakeMetrics, **kw: float) -> Recorder:
    options = {"batch_size": 50, "flush_interval_s": 0.02, "queue_max": 10_000, **kw}
    return Recorder(
        engine,
        Spool(spool_dir),
        metrics,
        batch_size=int(options["batch_size"]),
        flush_interval_s=options["flush_interval_s"],
        queue_max=int(options["queue_max"]),
        retry_initial_s=0.02,
        retry_max_s=0.1,
    )


async def test_writes_every_event_and_rollup_matches(engine: AsyncEngine, tmp_path: Path) -> None:
    metrics = FakeMetrics()
    recorder = _recorder(engine, tmp_path / "spool", metrics)
    await recorder.start()
    events = _submit(recorder, 120)
    await recorder.stop()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    totals = await rollup_totals(engine)
    assert totals == await raw_totals(engine)
    assert totals["cost_usd"] == 120 * sample_cost().total
    assert sum(metrics.batches) == 120
    assert max(metrics.batches) <= 50
    assert metrics.depth == 0


async def test_flushes_by_size_in_batches(engine: AsyncEngine, tmp_path: Path) -> None:
    metrics = FakeMetrics()
    recorder = _recorder(engine, tmp_path / "spool", metrics, batch_size=10)
    _submit(recorder, 25)
    await recorder.flush()
    assert sorted(metrics.batches) == [5, 10, 10]  # two batches in flight: any finish order
    assert await _count(engine) == 25


async def test_flushes_on_its_own_after_the_interval(engine: AsyncEngine, tmp_path: Path) -> None:
    metrics = FakeMetrics()
    recorder = _recorder(engine, tmp_path / "spool", metrics)
    await recorder.start()
    _submit(recorder, 3)
    await _wait_until(lambda: sum(metrics.batches) == 3)
    assert await _count(engine) == 3
    await recorder.stop()


class SqliteWriteLock:
    """An outage for SQLite: another connection holds the write lock."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._path = make_url(url).database
        self._lock: sqlite3.Connection | None = None

    async def down(self) -> None:
        self._lock = sqlite3.connect(str(self._path), isolation_level=None)
        self._lock.execute("BEGIN EXCLUSIVE")

    async def up(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None


class TcpRelay:
    """An outage for PostgreSQL: a loopback relay in front of it that refuses and cuts
    connections while down, like a server restart or a network partition."""

    def __init__(self, url: str) -> None:
        target = make_url(url)
        self._target = (target.host or "127.0.0.1", target.port or 5432)
        self.port = _free_port()
        self.url = target.set(host="127.0.0.1", port=self.port).render_as_string(False)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._open:
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._open |= {writer, server_writer}
        await asyncio.gather(_pipe(reader, server_writer), _pipe(server_reader, writer))
        self._open -= {writer, server_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


Outage = SqliteWriteLock | TcpRelay


@pytest.fixture
async def outage(migrated_url: str) -> AsyncIterator[Outage]:
    """A way to take the migrated database away and bring it back."""
    fault: Outage
    if migrated_url.startswith("sqlite"):
        fault = SqliteWriteLock(migrated_url)
    else:
        fault = TcpRelay(migrated_url)
        await fault.up()
    yield fault
    await fault.down() if isinstance(fault, TcpRelay) else await fault.up()


async def test_outage_spools_then_replays_every_event_once(
    outage: Outage, engine: AsyncEngine, tmp_path: Path
) -> None:
    metrics = FakeMetrics()
    faulty = make_engine(outage.url, sqlite_busy_timeout_ms=50)
    recorder = _recorder(faulty, tmp_path / "spool", metrics)
    await recorder.start()
    events = _submit(recorder, 20)
    await recorder.flush()
    await outage.down()
    events += _submit(recorder, 30)
    await recorder.flush()
    assert not recorder.database_ok
    assert metrics.spooled == 30
    assert await _count(engine) == 20
    await outage.up()
    await _wait_until(lambda: recorder.database_ok)
    events += _submit(recorder, 10)
    await recorder.stop()
    await faulty.dispose()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    assert await rollup_totals(engine) == await raw_totals(engine)
    assert metrics.replayed == 30
    assert Spool(tmp_path / "spool").segments() == []


async def test_events_queued_at_shutdown_during_an_outage_survive_a_restart(
    outage: Outage, engine: AsyncEngine, tmp_path: Path
) -> None:
    faulty = make_engine(outage.url, sqlite_busy_timeout_ms=50)
    first = _recorder(faulty, tmp_path / "spool", FakeMetrics())
    await first.start()
    await outage.down()
    events = _submit(first, 15)
    await first.stop()
    await outage.up()
    metrics = FakeMetrics()
    second = _recorder(faulty, tmp_path / "spool", metrics)
    await second.start()
    await second.stop()
    await faulty.dispose()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    assert metrics.replayed == 15


async def test_replaying_already_inserted_events_counts_them_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """A crash after the replay committed but before it removed the spool segment."""
    rows = [event_to_row(make_event()) for _ in range(40)]
    await write_batch(engine, rows[:25])
    spool = Spool(tmp_path / "spool")  # an earlier run's spool, left with one sealed segment
    for row in rows:
        spool.append(row_to_line(row))
    spool.seal()
    spool.close()
    metrics = FakeMetrics()
    recorder = _recorder(engine, tmp_path / "spool", metrics)
    await recorder.start()
    await recorder.stop()
    assert await _count(engine) == 40
    totals = await rollup_totals(engine)
    assert totals == await raw_totals(engine)
    assert totals["requests"] == 40
    assert spool.segments() == []


async def test_torn_spool_line_is_skipped_and_the_rest_replayed(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    for _ in range(3):
        spool.append(row_to_line(event_to_row(make_event())))
    assert spool.active_path is not None
    with spool.active_path.open("a") as active:
        active.write('{"event_id": "torn", "ts": "2026-11')
    spool.close()
    metrics = FakeMetrics()
    recorder = _recorder(engine, tmp_path / "spool", metrics)
    await recorder.start()
    await recorder.stop()
    assert await _count(engine) == 3
    assert metrics.dropped == 1  # the torn line: counted, never silent


async def test_row_the_database_refuses_is_quarantined_alone(
    engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = FakeMetrics()
    recorder = _recorder(engine, tmp_path / "spool", metrics)
    good = _submit(recorder, 4)
    broken = make_event()
    broken.provider = None  # type: ignore[assignment]  # a bug upstream: NOT NULL violated
    recorder.submit(broken)
    good += _submit(recorder, 3)
    with caplog.at_level(logging.ERROR):
        await recorder.flush()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in good)
    assert (metrics.dropped, metrics.quarantined) == (0, 1)
    assert recorder.database_ok
    (entry,) = Quarantine(tmp_path / "spool").entries()
    assert entry.row == event_to_row(broken)
    assert entry.reason["code"] in {"23502", "sqlite:1299"}  # not_null_violation
    assert f"database refused event {broken.event_id}" in caplog.text
    assert Spool(tmp_path / "spool").segments() == []


async def test_unwritable_spool_is_counted_and_the_events_still_reach_the_database(
    engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where the spool directory should be")
    metrics = FakeMetrics()
    recorder = _recorder(engine, not_a_dir / "spool", metrics, queue_max=2)
    with caplog.at_level(logging.ERROR):
        events = _submit(recorder, 5)
    assert metrics.spool_errors == 5
    assert "spool write failed" in caplog.text
    await recorder.flush()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    assert metrics.dropped == 0


async def test_database_down_and_spool_unwritable_drops_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, dead_url: str
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    dead = dead_url.removeprefix("http://")
    unreachable = make_engine(f"postgresql+asyncpg://postgres@{dead}/none")
    metrics = FakeMetrics()
    recorder = _recorder(unreachable, not_a_dir / "spool", metrics)
    _submit(recorder, 7)
    with caplog.at_level(logging.ERROR):
        await recorder.stop()
    await unreachable.dispose()
    assert metrics.dropped == 7
    assert "DROPPED 7 usage events" in caplog.text


@pytest.mark.postgres
async def test_killed_postgres_connections_lose_and_double_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(upgrade, pg_url)
    engine = make_engine(pg_url)
    recorder = _recorder(engine, tmp_path / "spool", FakeMetrics(), batch_size=20)
    await recorder.start()
    events: list[UsageEvent] = []
    killed = 0
    for round_ in range(10):
        events += _submit(recorder, 20)
        await asyncio.sleep(0.01)
        if round_ % 3 == 1:  # the recorder may be between connections (reconnecting): count
            killed += await terminate_backends(pg_url)
    assert killed >= 1
    await _wait_until(lambda: recorder.database_ok and recorder.queue_depth == 0)
    await recorder.stop()
    restarted = _recorder(engine, tmp_path / "spool", FakeMetrics())
    await restarted.start()
    await restarted.stop()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    assert (await rollup_totals(engine))["requests"] == 200
    await engine.dispose()


async def test_a_long_outage_holds_at_most_queue_max_events_in_memory(
    outage: Outage, engine: AsyncEngine, tmp_path: Path
) -> None:
    """While the database is away the backlog lives on disk, not in memory; when it is back
    every event is read back from the spool and written once."""
    faulty = make_engine(outage.url, sqlite_busy_timeout_ms=50)
    metrics = FakeMetrics()
    recorder = _recorder(faulty, tmp_path / "spool", metrics, batch_size=10, queue_max=25)
    await recorder.start()
    await outage.down()
    events = _submit(recorder, 200)
    await recorder.flush()
    assert not recorder.database_ok
    assert recorder.health()["in_memory_events"] <= 25
    assert recorder.health()["pending_events"] == 200
    await outage.up()
    await _wait_until(lambda: recorder.database_ok and recorder.queue_depth == 0)
    await recorder.stop()
    await faulty.dispose()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    assert (metrics.spooled, metrics.replayed, metrics.dropped) == (200, 200, 0)


async def test_spool_failing_while_the_database_is_away_keeps_events_until_one_takes_them(
    outage: Outage, engine: AsyncEngine, tmp_path: Path
) -> None:
    """Disk full and database away at once: the events stay in memory (counted as spool
    errors, never as written); when the disk has room again they are written as a whole
    segment, and the database gets them once it is back."""
    failing = {"on": True}

    def disk(fd: int, data: bytes) -> int:
        if failing["on"]:
            raise OSError(28, "No space left on device")
        return os.write(fd, data)

    faulty = make_engine(outage.url, sqlite_busy_timeout_ms=50)
    metrics = FakeMetrics()
    recorder = Recorder(
        faulty,
        Spool(tmp_path / "spool", write=disk),
        metrics,
        batch_size=10,
        flush_interval_s=0.02,
        retry_initial_s=0.02,
        retry_max_s=0.1,
    )
    await recorder.start()
    await outage.down()
    events = _submit(recorder, 30)
    await recorder.flush()
    assert metrics.spool_errors == 30
    assert recorder.health()["spool"] == "failing"
    assert Spool(tmp_path / "spool").segments() == []
    failing["on"] = False  # room again: the next failed write ships them to disk whole
    await recorder.flush()
    assert sum(1 for _ in Spool(tmp_path / "spool").segments()) >= 1
    await outage.up()
    await _wait_until(lambda: recorder.database_ok and recorder.queue_depth == 0)
    await recorder.stop()
    await faulty.dispose()
    assert sorted(await _stored_ids(engine)) == sorted(e.event_id for e in events)
    assert metrics.dropped == 0
