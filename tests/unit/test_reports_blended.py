"""The published industry example, rebuilt through the real pricer and the real rollup.

Agentic traffic: 300:1 input:output, 92 % of input read from cache, Opus-class $5/$25 per MTok with
5-minute cache writes ($6.25) and reads ($0.50). Per request (150 000 input + 500 output):
  cache read 138 000 × $0.50 = $0.069000
  5 m write   10 500 × $6.25 = $0.065625
  input        1 500 × $5    = $0.007500
  output         500 × $25   = $0.012500   → $0.154625 for 150 500 tokens = $1.027409/MTok
Sticker (no cache): 150 000 × $5 + 500 × $25 = $0.762500 = $5.066445/MTok; caching saved 79.72 %.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import reports
from proxy.pricing import Pricer
from proxy.store.rows import event_to_row
from proxy.store.writes import write_batch
from proxy.usage import Usage
from tests.factories import make_event

T0 = datetime(2026, 11, 26, 9, tzinfo=UTC)
TURN = Usage(input=1_500, cache_write_5m=10_500, cache_read=138_000, output=500)


async def test_agentic_traffic_on_opus_costs_about_one_dollar_per_mtok(engine: AsyncEngine) -> None:
    pricer = Pricer()
    events = []
    for i in range(40):
        event = make_event(
            started_at=T0 + timedelta(minutes=i), model="claude-opus-4-7", usage=TURN
        )
        event.cost = pricer.price(event)
        events.append(event)
    await write_batch(engine, [event_to_row(e) for e in events])

    found = await reports.blended(engine, "model", reports.Filters(start=T0))
    row = found.as_json()["rows"][0]
    assert row["model"] == "claude-opus-4-7"
    assert row["cost_usd"] == "6.185000"  # 40 × $0.154625
    assert row["sticker_usd"] == "30.500000"  # 40 × $0.7625
    assert row["cache_savings_usd"] == "24.315000"
    assert row["blended_usd_per_mtok"] == "1.027409"
    assert row["sticker_usd_per_mtok"] == "5.066445"
    assert row["cache_discount"] == "0.7972"
    assert row["input_output_ratio"] == "300.00"
    assert row["cache_hit_rate"] == "0.9200"
    assert Decimal("0.95") < Decimal(row["blended_usd_per_mtok"]) < Decimal("1.10")


async def test_blended_refuses_a_grouping_it_cannot_price(engine: AsyncEngine) -> None:
    with pytest.raises(reports.ReportError, match="model, user, team, provider, day"):
        await reports.blended(engine, "session", reports.Filters())
