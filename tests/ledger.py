"""Counting both sides: what the agent got, what the fake upstream served, what the store holds.

``agent_turns`` drives the real anthropic SDK (half streamed, half not) with a different usage
per request, so sums catch a lost or doubled event that counts alone might not. ``Ledger``
compares the three sides by message id (the fake upstream's, stored in ``message_id``) and
by token sums, and is the row each failure test prints for the issue's table.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
from sqlalchemy import func, select

from proxy.store.engine import make_engine
from proxy.store.tables import usage_events

KINDS = ("input_tokens", "cache_read_tokens", "output_tokens")


def random_usage(rng: random.Random) -> dict[str, int]:
    return {
        "input_tokens": rng.randrange(1, 5000),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": rng.randrange(0, 90_000),
        "output_tokens": rng.randrange(1, 3000),
    }


def agent_turn(client: anthropic.Anthropic, rng: random.Random, stream: bool) -> Any:
    """One request as an agent makes it; returns the SDK's final message."""
    usage = json.dumps(random_usage(rng))
    request: dict[str, Any] = {
        "model": "claude-opus-4-8",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "say hi"}],
        "extra_headers": {"x-fake-usage": usage, "x-tokenmeter-user": "ada"},
    }
    if not stream:
        return client.messages.create(**request)
    with client.messages.stream(**request) as events:
        return events.get_final_message()


def agent_turns(client: anthropic.Anthropic, n: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    return [agent_turn(client, rng, stream=i % 2 == 1) for i in range(n)]


def tokens_of(usage: Mapping[str, Any] | Any) -> tuple[int, int, int]:
    """(input, cache read, output) of a served usage dict or an SDK usage object."""
    get: Callable[[str], Any] = (
        usage.get if isinstance(usage, Mapping) else lambda k: getattr(usage, k)
    )
    return (get("input_tokens"), get("cache_read_input_tokens") or 0, get("output_tokens"))


async def recorded(url: str) -> dict[str, tuple[int, tuple[int, int, int]]]:
    """message id -> (events stored, token sums) in the database at ``url``."""
    engine = make_engine(url)
    columns = [func.sum(usage_events.c[name]) for name in KINDS]
    query = select(usage_events.c.message_id, func.count(), *columns).group_by(
        usage_events.c.message_id
    )
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    finally:
        await engine.dispose()
    return {row[0]: (row[1], (int(row[2]), int(row[3]), int(row[4]))) for row in rows}


def _sum(values: Iterable[tuple[int, int, int]]) -> tuple[int, int, int]:
    totals = [0, 0, 0]
    for value in values:
        totals = [a + b for a, b in zip(totals, value, strict=True)]
    return (totals[0], totals[1], totals[2])


@dataclass
class Ledger:
    """The three sides of one test, and what the issue's table shows."""

    answered: dict[str, tuple[int, int, int]]  # message id -> tokens, as the agent saw them
    served: dict[str, tuple[int, int, int]]  # as the fake upstream sent them
    stored: dict[str, tuple[int, tuple[int, int, int]]]
    quarantined: int = 0

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count, _ in self.stored.values() if count > 1)

    @property
    def lost(self) -> int:
        return len(set(self.answered) - set(self.stored))

    def row(self, name: str) -> str:
        stored_tokens = _sum(tokens for _, tokens in self.stored.values())
        return (
            f"LEDGER {name}: answered={len(self.answered)} served={len(self.served)}"
            f" recorded={sum(c for c, _ in self.stored.values())} duplicates={self.duplicates}"
            f" quarantined={self.quarantined} lost={self.lost}"
            f" tokens answered={sum(map(sum, self.answered.values()))}"
            f" served={sum(map(sum, self.served.values()))} recorded={sum(stored_tokens)}"
        )


def answered_by(messages: Iterable[Any]) -> dict[str, tuple[int, int, int]]:
    return {message.id: tokens_of(message.usage) for message in messages}


def served_by(messages: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int, int]]:
    return {message["id"]: tokens_of(message["usage"]) for message in messages}


async def wait_recorded(url: str, ids: set[str], timeout_s: float = 30.0) -> None:
    """Until every id in ``ids`` is stored (the recorder ships on its own)."""
    deadline = time.monotonic() + timeout_s
    while not ids <= set(await recorded(url)):
        if time.monotonic() > deadline:
            missing = len(ids - set(await recorded(url)))
            raise AssertionError(f"{missing} of {len(ids)} events not recorded in {timeout_s} s")
        await asyncio.sleep(0.1)
