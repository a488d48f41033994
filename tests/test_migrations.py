"""Migrations build exactly the schema the code expects, on SQLite and PostgreSQL, and undo it."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from proxy.store.engine import alembic_config, current, downgrade, make_engine, upgrade
from proxy.store.tables import metadata

TABLES = {
    "usage_events",
    "usage_hourly",
    "usage_daily",
    "task_daily",
    "task_monthly",
    "session_daily",
    "people",
    "tasks",
    "provider_reports",
    "session_context",
    "api_keys",
    "api_key_audit",
    "message_batches",
    "seats",
    "budgets",
    "budget_counters",
    "budget_holds",
    "budget_alerts",
}


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def _inspect(url: str, look: Any) -> Any:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_matches_the_models(db_url: str) -> None:
    assert await asyncio.to_thread(current, db_url) is None
    await asyncio.to_thread(upgrade, db_url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await asyncio.to_thread(current, db_url) == head
    assert await _inspect(db_url, _tables) == TABLES
    assert await _inspect(db_url, _diff) == []


async def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(upgrade, db_url)
    assert await _inspect(db_url, _diff) == []


async def test_downgrade_to_base_removes_everything(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(downgrade, db_url, "base")
    assert await asyncio.to_thread(current, db_url) is None
    assert await _inspect(db_url, _tables) == set()


def test_migration_scripts_form_one_line_of_history() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    assert [rev.revision for rev in scripts.walk_revisions()][-1] == "0001"
