"""Budget alerts by webhook: one POST per threshold crossed per period, across all replicas.

After each refresh, ``Alerts.check(view)`` looks at every budget's counter (the database's,
which every replica shares) against its thresholds. A threshold newly crossed is claimed with
``INSERT … ON CONFLICT DO NOTHING`` into ``budget_alerts``: the one replica whose insert
succeeded sends it, so each threshold is sent once per period whatever the number of replicas.
The body is JSON (``scope``, ``name``, ``period``, ``threshold``, ``limit_usd``, ``spent_usd``,
``percent``, ``period_start``, ``kind``); a failed POST is retried with exponential backoff
(1, 2, 4, 8 s), then logged and given up. A plain HTTP/1.1 POST on asyncio streams: the
webhook is one small request, and the library HTTP clients belong to ``proxy.upstream``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.budgets import Budget, CounterKey
from proxy.guard import View
from proxy.store.rollup import dialect_insert
from proxy.store.tables import budget_alerts

log = logging.getLogger("tokenmeter.store.alerts")
RETRIES = (1.0, 2.0, 4.0, 8.0)


class Alerts:
    """See module doc."""

    def __init__(self, engine: AsyncEngine, url: str, retries: tuple[float, ...] = RETRIES) -> None:
        self._engine = engine
        self._url = url
        self._retries = retries
        self._claimed: set[tuple[CounterKey, int]] = set()
        self._sending: set[asyncio.Task[None]] = set()

    async def check(self, view: View, starts: dict[str, datetime]) -> None:
        """Claim and send every threshold ``view`` shows crossed (``starts``: period starts)."""
        for budget in view.budgets:
            key = (*budget.key, starts[budget.period.value])
            spent = view.counted.get(key, Decimal(0))
            for threshold in budget.alerts:
                crossed = spent * 100 >= budget.amount_usd * threshold
                if crossed and (key, threshold) not in self._claimed:
                    self._claimed.add((key, threshold))
                    if await self._claim(key, threshold):
                        self._send_later(_body(budget, key, threshold, spent))

    async def _claim(self, key: CounterKey, threshold: int) -> bool:
        scope, name, period, start = key
        row = {"scope": scope, "name": name, "period": period, "period_start": start}
        async with self._engine.begin() as conn:
            insert = dialect_insert(conn, budget_alerts).values(
                **row, threshold=threshold, sent_at=datetime.now(UTC)
            )
            result = await conn.execute(insert.on_conflict_do_nothing())
        return bool(result.rowcount)

    def _send_later(self, body: bytes) -> None:
        task = asyncio.create_task(self._send(body))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, body: bytes) -> None:
        for attempt, pause in enumerate((*self._retries, None)):
            try:
                status = await asyncio.wait_for(_post(self._url, body), timeout=10)
                if status < 300:
                    return
                problem = f"HTTP {status}"
            except (OSError, TimeoutError, ValueError) as exc:
                problem = repr(exc)
            if pause is None:
                log.error(
                    "budget alert webhook failed %d times (%s); gave up", attempt + 1, problem
                )
                return
            await asyncio.sleep(pause)

    async def stop(self) -> None:
        for task in list(self._sending):
            task.cancel()


def _body(budget: Budget, key: CounterKey, threshold: int, spent: Decimal) -> bytes:
    return json.dumps(
        {
            "scope": budget.scope.value,
            "name": budget.name or None,
            "period": budget.period.value,
            "period_start": key[3].isoformat(),
            "threshold": threshold,
            "kind": "hard" if budget.hard else "soft",
            "limit_usd": f"{budget.amount_usd:f}",
            "spent_usd": f"{spent:f}",
            "percent": f"{(spent / budget.amount_usd * 100).quantize(Decimal('0.1')):f}",
        }
    ).encode()


async def _post(url: str, body: bytes) -> int:
    """POST ``body`` as JSON to ``url``; the response status."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
