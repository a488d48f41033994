"""Alembic environment: migrate on the connection ``proxy.store.engine`` hands over.

``proxy.store.engine`` opens an async engine and runs Alembic inside ``run_sync``, passing the
sync-facing connection as ``config.attributes["connection"]``. Without one (a developer running
Alembic's API directly) the database URL comes from ``sqlalchemy.url`` or the tokenmeter Settings,
and an async engine is created here. ``render_as_batch`` lets later ALTERs work on SQLite.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from proxy.store.tables import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from proxy.config import Settings

    return Settings().database_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_async())
    else:
        _run(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
