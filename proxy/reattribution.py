"""Give past events to the owners a key map names, and keep the rollups in step.

A key map (``TOKENMETER_KEY_MAP_FILE``) only attributes traffic from the moment the proxy loads
it; ``reattribute(engine, owners, since)`` applies it to the events already recorded from
``since``: each event whose key fingerprint the map knows gets the user, team and source the
proxy would give it today (``attribution.with_owner``: the owner decides where nothing stronger
named anyone, and only fills gaps after headers or a path prefix). The changed events are
updated and the rollups of their hours rebuilt from raw events (``rollup.rebuild_hours``) in
one transaction, with the rollups locked against a running recorder meanwhile. A second run
with the same map changes nothing. ``dry_run`` counts the same changes and writes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.attribution import KeyOwner, with_owner
from proxy.store.aggregates import hour_of
from proxy.store.rollup import lock_rollups, rebuild_hours
from proxy.store.tables import usage_events

_CHUNK = 500  # fingerprints per IN (...) list: under every SQLite build's parameter limit
_WHO = ("user", "team", "attribution_source")


@dataclass(slots=True)
class ReattributionResult:
    since: datetime
    dry_run: bool
    events: int = 0  # events of mapped keys since ``since``
    changed: int = 0  # of those, events whose user, team or source changed
    hours: int = 0  # hours whose rollup was rebuilt
    moves: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (key, from, to)


async def reattribute(
    engine: AsyncEngine,
    owners: Mapping[str, KeyOwner],
    since: datetime,
    *,
    dry_run: bool = False,
) -> ReattributionResult:
    """Re-attribute every event of a mapped key from ``since``; see the module docstring."""
    result = ReattributionResult(since, dry_run)
    async with engine.begin() as conn:
        if not dry_run:
            await lock_rollups(conn)
        changed: list[tuple[dict[str, Any], tuple[str | None, str | None, str]]] = []
        async for row in _events(conn, sorted(owners), since):
            result.events += 1
            new = with_owner(*_who(row), owners[row["key_fingerprint"]])
            if new != _who(row):
                changed.append((row, new))
                result.moves[(row["key_fingerprint"], _name(*_who(row)), _name(*new))] += 1
        result.changed = len(changed)
        if changed and not dry_run:
            await _write(conn, changed)
            result.hours = await _rebuild(conn, changed)
    return result


async def _events(
    conn: AsyncConnection, fingerprints: Sequence[str], since: datetime
) -> AsyncIterator[dict[str, Any]]:
    """The events of these keys from ``since``, streamed (a big history never sits in memory;
    only the changes do)."""
    c = usage_events.c
    columns = (c.event_id, c.ts, c.key_fingerprint, *(c[name] for name in _WHO))
    for start in range(0, len(fingerprints), _CHUNK):
        chunk = fingerprints[start : start + _CHUNK]
        query = sa.select(*columns).where(c.ts >= since, c.key_fingerprint.in_(chunk))
        async for row in (await conn.stream(query)).mappings():
            yield dict(row)


async def _rebuild(conn: AsyncConnection, changed: Sequence[tuple[Mapping[str, Any], Any]]) -> int:
    hours = {hour_of(row["ts"]) for row, _ in changed}
    await rebuild_hours(conn, hours)
    return len(hours)


def _who(row: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    return row["user"], row["team"], row["attribution_source"]


def _name(user: str | None, team: str | None, source: str) -> str:
    who = user or "(no user)"
    return f"{who} ({team}, {source})" if team else f"{who} ({source})"


async def _write(conn: AsyncConnection, changed: Sequence[tuple[Mapping[str, Any], Any]]) -> None:
    c = usage_events.c
    update = (
        sa.update(usage_events)
        .where(c.event_id == sa.bindparam("b_event_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in _WHO})
    )
    params = [
        {"b_event_id": row["event_id"], **{f"b_{n}": v for n, v in zip(_WHO, new, strict=True)}}
        for row, new in changed
    ]
    await conn.execute(update, params)
