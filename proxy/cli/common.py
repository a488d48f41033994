"""Helpers every command shares: settings-driven engine runs, aligned tables, time windows, and
how a dollar figure is shown (``?`` unknown, ``*`` covers priced requests only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.config import Settings


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


UNKNOWN = "?"
PARTIAL = "*"
FOOTNOTE = (
    f"{PARTIAL} some requests have no known price: $ and $/MTok cover the priced ones only;"
    f" {UNKNOWN} no request has a price"
)


def dollars(data: dict[str, Any], key: str) -> str:
    """A dollar (or $/MTok) figure of a report row: ``?`` when unknown, ``*`` when partial."""
    value = data.get(key)
    if value is None:  # unknown dollars, or a ratio with nothing to divide by
        return UNKNOWN if data.get("requests") and data.get("cost_usd") is None else "-"
    text = str(value)
    return text if data.get("cost_complete", True) else text + PARTIAL


def footnote(rows: list[dict[str, Any]]) -> str | None:
    """The legend for ``dollars``' marks, when a row has one."""
    return FOOTNOTE if any(not row.get("cost_complete", True) for row in rows) else None


def since(text: str) -> datetime:
    now = datetime.now(UTC)
    units = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}
    if text[-1:] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_with_engine(settings: Settings, work: Callable[[Any], Any]) -> Any:
    from proxy.store.engine import make_engine

    async def run() -> Any:
        engine = make_engine(settings.database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())
