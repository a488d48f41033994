"""Nothing lost when the database fails: every failure class of issue 12, on real servers.

Each test runs the real proxy with the real anthropic SDK against the fake Anthropic upstream:
20 agent turns, then a database fault, 30 turns during it, the fault cleared, 10 turns after.
It asserts what a finance user would: every request answered as the upstream answered it, every
event the fake served stored exactly once (events counted and tokens summed on both sides),
``/healthz`` degraded during the fault, nothing quarantined, nothing dropped. Faults on the
shared server touch only the test's own throwaway database; those that stop or starve a server
run on a private one (``tests/pgserver.py``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypedDict

import anthropic
import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from proxy.app import create_app
from proxy.config import Settings
from proxy.serving import SERVER_OPTIONS
from proxy.store.quarantine import Quarantine
from proxy.store.spool import Spool
from tests.conftest import Proxy
from tests.dbfixtures import terminate_backends
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.ledger import Ledger, agent_turns, answered_by, recorded, served_by, wait_recorded
from tests.pgserver import PrivatePostgres, postgres_bin
from tests.servers import ServerThread


class Timings(TypedDict):
    """The recorder's settings shortened so a fault shows within seconds."""

    recorder_flush_interval_s: float
    db_write_timeout_s: float
    recorder_retry_max_s: float


FAST: Timings = {
    "recorder_flush_interval_s": 0.05,
    "db_write_timeout_s": 1.0,
    "recorder_retry_max_s": 0.3,
}


class Fault(Protocol):
    url: str
    expect: tuple[str, ...]  # what /healthz's last_error says during the fault (one of)

    async def down(self) -> None: ...
    async def during(self, proxy: Proxy) -> None: ...
    async def up(self) -> None: ...


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str) -> asyncpg.Connection:
    """A superuser session on the server of ``url``, in its ``postgres`` database."""
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    return await asyncpg.connect(admin.render_as_string(hide_password=False))


async def _backends(
    admin: asyncpg.Connection, database: str, *, waiting: bool = False
) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend' AND ($2 = false OR wait_event_type = 'Lock')",
        database,
        waiting,
    )
    return [row["pid"] for row in rows]


class _Base:
    expect: tuple[str, ...] = ()

    def __init__(self, url: str) -> None:
        self.url = url
        self.database = make_url(url).database or ""

    async def during(self, proxy: Proxy) -> None:
        pass


class NotAccepting(_Base):
    """``ALTER DATABASE x WITH ALLOW_CONNECTIONS false`` and its sessions terminated."""

    expect: tuple[str, ...] = ("[55000]",)  # object_not_in_prerequisite_state

    async def down(self) -> None:
        admin = await _admin(self.url)
        await admin.execute(f'ALTER DATABASE "{self.database}" WITH ALLOW_CONNECTIONS false')
        await admin.close()
        await terminate_backends(self.url)

    async def up(self) -> None:
        admin = await _admin(self.url)
        await admin.execute(f'ALTER DATABASE "{self.database}" WITH ALLOW_CONNECTIONS true')
        await admin.close()


class ReadOnly(_Base):
    """Writes refused as on a standby after a failover (``default_transaction_read_only``);
    when it clears, the pooled connections are still read-only: the recorder must reconnect."""

    expect: tuple[str, ...] = ("[25006]",)  # read_only_sql_transaction

    async def down(self) -> None:
        admin = await _admin(self.url)
        await admin.execute(
            f'ALTER DATABASE "{self.database}" SET default_transaction_read_only = on'
        )
        await admin.close()
        await terminate_backends(self.url)

    async def up(self) -> None:
        admin = await _admin(self.url)
        await admin.execute(f'ALTER DATABASE "{self.database}" RESET default_transaction_read_only')
        await admin.close()


class TableLock(_Base):
    """Another session holds ``LOCK TABLE usage_hourly IN ACCESS EXCLUSIVE MODE``: writes hang."""

    expect: tuple[str, ...] = ("database write took longer than",)

    session: asyncpg.Connection | None = None

    async def down(self) -> None:
        self.session = await asyncpg.connect(_plain(self.url))
        await self.session.execute("BEGIN; LOCK TABLE usage_hourly IN ACCESS EXCLUSIVE MODE")

    async def up(self) -> None:
        assert self.session is not None
        await self.session.execute("ROLLBACK")
        await self.session.close()


class TerminatedMidBatch(TableLock):
    """``pg_terminate_backend`` of the recorder's session while it is inside a batch."""

    expect: tuple[str, ...] = ("[08003]", "[57P01]")  # connection_does_not_exist, admin_shutdown

    async def during(self, proxy: Proxy) -> None:
        admin = await _admin(self.url)
        try:
            for _ in range(300):
                if blocked := await _backends(admin, self.database, waiting=True):
                    await admin.fetch(
                        "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", blocked
                    )
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("no recorder write was ever inside a batch")
        finally:
            await admin.close()


class NotListening(_Base):
    """The server is stopped: nothing listens on its port."""

    expect: tuple[str, ...] = ("Connection refused",)

    def __init__(self, url: str, server: PrivatePostgres) -> None:
        super().__init__(url)
        self.server = server

    async def down(self) -> None:
        await asyncio.to_thread(self.server.stop, "fast")

    async def up(self) -> None:
        await asyncio.to_thread(self.server.start)


class SmartStop(NotListening):
    """``pg_ctl stop -m smart``: sessions keep working while new ones are refused (57P03),
    then, once the last session ends, the server is gone."""

    # cannot_connect_now while it shuts down; once it is gone, a retry meets a closed port
    expect: tuple[str, ...] = ("[57P03]", "Connection refused")

    admin: asyncpg.Connection | None = None

    async def down(self) -> None:
        self.admin = await _admin(self.url)
        await asyncio.to_thread(self.server.stop, "smart", wait=False)
        for pid in await _backends(self.admin, self.database):
            await self.admin.execute("SELECT pg_terminate_backend($1)", pid)

    async def during(self, proxy: Proxy) -> None:
        assert self.admin is not None
        await self.admin.close()  # the last session: the smart shutdown completes
        for _ in range(600):  # 30 s: a loaded CI machine can be slow to let the server go
            if await asyncio.to_thread(self.server.stopped):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the smart shutdown did not complete after the last session")

    async def up(self) -> None:
        await asyncio.to_thread(self.server.start)


class TooManyConnections(_Base):
    """Every connection slot taken: the server answers 53300 "too many clients already"."""

    expect: tuple[str, ...] = ("[53300]",)

    hogs: list[asyncpg.Connection]

    async def down(self) -> None:
        """Take every slot, then end the proxy's sessions until none is left: its background
        refreshers (budgets every 0.25 s, keys) reconnect at once, and a slot they win back
        between the two would keep the proxy's pool working."""
        self.hogs = []
        await self._fill()
        for _ in range(50):
            mine = {hog.get_server_pid() for hog in self.hogs}
            victims = set(await _backends(self.hogs[0], self.database)) - mine
            if not victims:
                return
            for pid in victims:
                await self.hogs[0].execute("SELECT pg_terminate_backend($1)", pid)
            await asyncio.sleep(0.05)
            await self._fill()
        raise AssertionError("the proxy kept winning a connection slot back")

    async def _fill(self) -> None:
        while True:
            try:
                self.hogs.append(await asyncpg.connect(_plain(self.url)))
            except asyncpg.TooManyConnectionsError:
                return

    async def up(self) -> None:
        for hog in self.hogs:
            await hog.close()


class SqliteLocked(_Base):
    """Another connection holds SQLite's write lock (``BEGIN EXCLUSIVE``)."""

    expect: tuple[str, ...] = ("database is locked",)

    lock: sqlite3.Connection | None = None

    async def down(self) -> None:
        self.lock = sqlite3.connect(str(make_url(self.url).database), isolation_level=None)
        self.lock.execute("BEGIN EXCLUSIVE")

    async def up(self) -> None:
        assert self.lock is not None
        self.lock.execute("ROLLBACK")
        self.lock.close()


# -- the scenario ---------------------------------------------------------------------------


async def _health(proxy: Proxy, status: str) -> dict[str, Any]:
    """Poll /healthz until it says ``status`` (5 s); it answers 200 either way."""
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        for _ in range(100):
            response = await client.get("/healthz")
            assert response.status_code == 200
            if response.json()["status"] == status:
                return dict(response.json())
            await asyncio.sleep(0.05)
    raise AssertionError(f"/healthz never said {status}: {response.json()}")


async def survive(name: str, fault: Fault, proxy: Proxy, fake: FakeAnthropic) -> Ledger:
    """Traffic before, during and after ``fault``; the ledger, checked."""
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0) as client:
        answered = await asyncio.to_thread(agent_turns, client, 20, 1)
        await wait_recorded(fault.url, {m.id for m in answered})
        await fault.down()
        answered += await asyncio.to_thread(agent_turns, client, 30, 2)
        await fault.during(proxy)
        degraded = await _health(proxy, "degraded")
        assert degraded["store"]["database"] == "unavailable"
        last_error = degraded["store"]["last_error"]
        assert any(text in last_error for text in fault.expect), last_error
        await fault.up()
        answered += await asyncio.to_thread(agent_turns, client, 10, 3)
    ledger = Ledger(answered_by(answered), served_by(fake.served), {})
    assert ledger.answered == ledger.served  # every request answered as upstream answered
    await wait_recorded(fault.url, set(ledger.served))
    await _health(proxy, "ok")
    ledger.stored = await recorded(fault.url)
    ledger.quarantined = len(Quarantine(proxy.app.parts.settings.spool_dir).entries())
    print(ledger.row(name))
    assert {k: (1, v) for k, v in ledger.served.items()} == ledger.stored
    assert (ledger.quarantined, ledger.lost, ledger.duplicates) == (0, 0, 0)
    assert proxy.metric("tokenmeter_recorder_dropped_events_total") == 0
    assert proxy.metric("tokenmeter_recorder_spooled_events_total") > 0
    return ledger


@pytest.fixture
def fake(upstream: tuple[FakeAnthropic, ServerThread]) -> FakeAnthropic:
    return upstream[0]


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL (max 8 connections), started; removed after the test."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
    server = PrivatePostgres(bin_dir, max_connections="8", superuser_reserved_connections="0")
    try:
        server.start()
        subprocess.run(  # noqa: S603 - the test's own createdb
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "tokenmeter",
            ],
            check=True,
        )
        yield server
    finally:
        server.close()


SHARED: dict[str, Callable[[str], Fault]] = {
    "not_accepting_connections": NotAccepting,
    "read_only_transaction": ReadOnly,
    "table_lock_hangs_writes": TableLock,
    "terminated_mid_batch": TerminatedMidBatch,
}


@pytest.mark.postgres
@pytest.mark.parametrize("name", SHARED)
async def test_shared_server_fault_loses_nothing(
    name: str, pg_url: str, make_proxy: Callable[..., Proxy], fake: FakeAnthropic
) -> None:
    timeout = 3.0 if name == "terminated_mid_batch" else FAST["db_write_timeout_s"]
    proxy = make_proxy(database_url=pg_url, **{**FAST, "db_write_timeout_s": timeout})
    await survive(name, SHARED[name](pg_url), proxy, fake)


PRIVATE: dict[str, Callable[[str, PrivatePostgres], Fault]] = {
    "server_not_listening": NotListening,
    "smart_shutdown": SmartStop,
    "too_many_connections": lambda url, _: TooManyConnections(url),
}


@pytest.mark.postgres
@pytest.mark.parametrize("name", PRIVATE)
async def test_private_server_fault_loses_nothing(
    name: str, private_pg: PrivatePostgres, make_proxy: Callable[..., Proxy], fake: FakeAnthropic
) -> None:
    url = private_pg.url("tokenmeter")
    proxy = make_proxy(database_url=url, **FAST)
    await survive(name, PRIVATE[name](url, private_pg), proxy, fake)


async def test_sqlite_locked_loses_nothing(
    make_proxy: Callable[..., Proxy], fake: FakeAnthropic, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/tokenmeter.db"
    proxy = make_proxy(database_url=url, **FAST)
    await survive("sqlite_locked", SqliteLocked(url), proxy, fake)


class FillingDisk:
    """``os.write`` on a disk that keeps filling up: every 3rd write is short, every 5th fails
    with ENOSPC (what a full spool volume does), for the first ``FULL_FOR`` writes; then space
    is freed. Which write is the last one depends on the rows' size (segment writes), so a disk
    full to the end would leave the spool failing by chance."""

    FULL_FOR = 50

    def __init__(self) -> None:
        self.calls = self.failures = 0
        self.append_failures = 0  # of one-line appends (a whole segment comes as a memoryview)

    def __call__(self, fd: int, data: bytes) -> int:
        self.calls += 1
        if self.calls > self.FULL_FOR:
            return os.write(fd, data)
        failed = self.calls % 5 == 0 or self.calls % 3 == 0
        self.failures += failed
        self.append_failures += failed and isinstance(data, bytes)
        if self.calls % 5 == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.calls % 3 == 0:
            return os.write(fd, data[: len(data) // 2])
        return os.write(fd, data)


@pytest.mark.postgres
async def test_short_and_failed_spool_writes_are_counted_and_lose_nothing(
    pg_url: str, tmp_path: Path, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    """A spool write that fails or is short is an error, counted, never taken as written:
    with the database away at the same time, those events wait in memory, not nowhere."""
    disk = FillingDisk()
    settings = Settings(
        database_url=pg_url,
        anthropic_upstream=upstream[1].url,
        spool_dir=tmp_path / "spool",
        **FAST,
    )
    app = create_app(
        settings, registry=CollectorRegistry(), spool=Spool(settings.spool_dir, write=disk)
    )
    with ServerThread(app, **SERVER_OPTIONS) as server:
        proxy = Proxy(server, app)
        await survive("spool_writes_short_or_failing", NotAccepting(pg_url), proxy, upstream[0])
        proxy.http.close()
    assert disk.append_failures > 10
    assert proxy.metric("tokenmeter_recorder_spool_write_errors_total") == disk.append_failures
    for segment in Spool(tmp_path / "spool").segments():
        assert None not in list(Spool(segment.parent).read(segment))  # no torn line anywhere
