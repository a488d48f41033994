"""``tokenmeter db quarantine list|replay``: the usage events the database refused.

They sit in ``quarantine.jsonl`` in ``TOKENMETER_SPOOL_DIR`` (``proxy.store.quarantine``); run
these where that directory is (in Kubernetes, in the pod). Fix what made them fail (the schema,
or a value in the file: it is plain JSON lines), then replay; what is still refused stays.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.cli.common import run_with_engine, table
from proxy.config import Settings
from proxy.store.aggregates import COUNT_COLUMNS
from proxy.store.quarantine import Entry, Quarantine
from proxy.store.rows import Row

_HEADER = ("event_id", "time", "user", "model", "tokens", "cost_usd", "code", "error")


def _cells(entry: Entry) -> tuple[str, ...]:
    row, reason = entry.row, entry.reason
    tokens = sum(v for name in COUNT_COLUMNS if isinstance(v := row.get(name), int))
    cost = row.get("cost_usd")
    return (
        str(row.get("event_id", "?")),
        str(row.get("ts", "")),
        str(row.get("user") or ""),
        str(row.get("model") or ""),
        str(tokens),
        "unknown" if cost is None else str(cost),
        str(reason.get("code") or ""),
        str(reason.get("error", ""))[:120],
    )


def _json(entry: Entry) -> str:
    if entry.raw is not None:
        return json.dumps({"unreadable": entry.raw.decode("utf-8", "replace")})
    return json.dumps({"row": entry.row, "reason": entry.reason}, default=str)


def show(settings: Settings, *, as_json: bool = False) -> str:
    """The quarantine as an aligned table (or JSON lines)."""
    entries = Quarantine(settings.spool_dir).entries()
    if as_json:
        return "\n".join(map(_json, entries))
    if not entries:
        return f"quarantine is empty ({settings.spool_dir})"
    return table([_HEADER, *map(_cells, entries)])


def replay(settings: Settings) -> tuple[int, int]:
    """Write every quarantined event again; (written, still quarantined)."""
    from proxy.store.writes import write_batch

    async def work(engine: AsyncEngine) -> tuple[int, int]:
        async def write(rows: Sequence[Row]) -> None:
            await asyncio.wait_for(write_batch(engine, rows), settings.db_write_timeout_s)

        written, kept = await Quarantine(settings.spool_dir).replay(write)
        return written, len(kept)

    result: tuple[int, int] = run_with_engine(settings, work)
    return result
