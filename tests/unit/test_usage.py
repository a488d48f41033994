"""The value types: what a copy of a tap's facts keeps, and event ids."""

from __future__ import annotations

import os
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from proxy.usage import (
    Attribution,
    Cost,
    QuotaReading,
    ResponseFacts,
    Status,
    Usage,
    UsageEvent,
    new_event_id,
)


def test_with_usage_copies_every_field() -> None:
    # Every field set to a value that is not its default, so a field with_usage forgets shows.
    values: dict[str, Any] = {}
    for f in fields(ResponseFacts):
        if f.name == "usage":
            values[f.name] = Usage(input=1)
        elif f.type == "bool":
            values[f.name] = True
        else:
            values[f.name] = f"{f.name}-value"
    facts = ResponseFacts(**values)
    usage = Usage(output=7)
    copy = facts.with_usage(usage)
    assert copy is not facts
    assert copy.usage is usage
    assert copy == ResponseFacts(**{**values, "usage": usage})
    assert facts.usage == Usage(input=1)


def test_with_cost_copies_every_field() -> None:
    # Every field set to a value that is not its default (and no two alike), so a field
    # with_cost forgets or passes in the wrong place shows.
    values: dict[str, Any] = {
        "provider": "p",
        "method": "m",
        "path": "/x",
        "started_at": datetime(2026, 11, 26, tzinfo=UTC),
        "attribution": Attribution(user="u"),
        "facts": ResponseFacts(model="model"),
        "status": Status.INCOMPLETE,
        "http_status": 299,
        "stream": True,
        "duration_ms": 1.5,
        "upstream_headers_ms": 2.5,
        "first_token_ms": 3.5,
        "added_ms": 4.5,
        "request_id": "req",
        "cost": None,
        "event_id": "id",
        "quota": (QuotaReading("5h", 0.5),),
    }
    assert set(values) == {f.name for f in fields(UsageEvent)}
    event = UsageEvent(**values)
    cost = Cost(Decimal(1), {}, Decimal(2), "v")
    facts = ResponseFacts(model="other")
    assert event.with_cost(cost) == UsageEvent(**{**values, "cost": cost})
    copy = event.with_cost(cost, facts)
    assert copy == UsageEvent(**{**values, "cost": cost, "facts": facts})
    assert event.cost is None
    assert event.facts == ResponseFacts(model="model")


def test_event_ids_are_unique_and_a_forked_worker_gets_its_own_prefix() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a uvicorn worker would be forked the same way
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child[:16] != ids[0][:16]  # another process: another random prefix
    assert new_event_id()[:16] == ids[0][:16]  # this process keeps its own
