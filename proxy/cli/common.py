"""Helpers every command shares: settings-driven engine runs, aligned tables, time windows."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.config import Settings

# Controls (and bidirectional overrides) would move the cursor, colour the terminal or reorder
# the line: shown escaped. Recorded names can't hold them; people and task records might.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """Aligned columns: the first to the left, the others (numbers) to the right. Alignment
    counts terminal columns, so names in CJK or with accents line up."""
    safe = [tuple(map(_visible, row)) for row in rows]
    widths = [max(_width(row[i]) for row in safe) for i in range(len(safe[0]))]
    lines = []
    for row in safe:
        cells = [row[0] + " " * (widths[0] - _width(row[0]))]
        cells += [
            " " * (width - _width(cell)) + cell
            for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _visible(text: str) -> str:
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _width(text: str) -> int:
    """Terminal columns: wide (CJK) characters take two, combining and format ones none."""
    if text.isascii():
        return len(text)
    return sum(
        0
        if unicodedata.combining(c) or unicodedata.category(c) == "Cf"
        else 2
        if unicodedata.east_asian_width(c) in "WF"
        else 1
        for c in text
    )


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
