"""Building the async engine, and running Alembic migrations without an ``alembic.ini``.

``make_engine(url)`` is the only place engine options live. SQLite (the zero-set-up default) gets
WAL so readers never block the writer, a busy timeout instead of instant "database is locked",
and ``foreign_keys`` off (the schema has none; stated so it never changes under us). PostgreSQL
gets a small pool with pre-ping, so a restarted server costs one failed batch, not a dead pool,
and a connect timeout short enough that an unreachable server fails fast into the spool.

``upgrade``/``downgrade``/``current`` configure Alembic in code: the scripts are the
``proxy.migrations`` package (``migrations/`` in the repository, installed inside ``proxy``, so
they are found installed or from an editable checkout), and the connection is handed to its
``env.py`` through ``Config.attributes``. They are synchronous
(each runs its own short event loop): call them from the CLI, or ``asyncio.to_thread`` them from
async code. ``revision(engine)`` reads the revision on an engine already open (async);
``head_revision()`` is the latest one the scripts define.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5.0


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
        cursor.close()

    return on_connect


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> AsyncEngine:
    """The engine for ``url`` (``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(sqlite_busy_timeout_ms))
        return engine
    return create_async_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S},
    )


def alembic_config() -> Config:
    """Alembic's configuration, pointing at the ``proxy.migrations`` package."""
    config = Config()
    config.set_main_option("script_location", str(files("proxy.migrations")))
    return config


def _run(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def _migrate(url: str, action: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run, action, revision)
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (creating the schema if empty)."""
    asyncio.run(_migrate(url, "upgrade", revision))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops everything)."""
    asyncio.run(_migrate(url, "downgrade", revision))


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def revision(engine: AsyncEngine) -> str | None:
    """The revision the database behind ``engine`` is at, or None when it was never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str | None:
    """The latest revision this tokenmeter ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _current_async(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return await revision(engine)
    finally:
        await engine.dispose()


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it was never migrated."""
    return asyncio.run(_current_async(url))
