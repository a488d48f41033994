"""A fake Anthropic Admin API: the usage and cost reports, paginated, in the real shapes.

Serves ``GET /v1/organizations/usage_report/messages`` and ``GET /v1/organizations/cost_report``
(platform.claude.com/docs/en/api/admin/usage_report and …/cost_report): one daily bucket per UTC
day from ``starting_at`` up to ``ending_at`` (``{starting_at, ending_at, results}``, RFC 3339),
``page_size`` buckets a page with ``has_more``/``next_page``, cost ``amount`` a decimal string
of cents. The results of a day are what a test put in ``usage[day]`` / ``cost[day]``, built with
``usage_line`` and ``cost_lines`` from token counts and list prices. Requests without the admin
key get Anthropic's 401 error body. Every request is kept in ``requests``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.fakes.asgi import lifespan, request_of, send_json

USAGE_PATH = "/v1/organizations/usage_report/messages"
COST_PATH = "/v1/organizations/cost_report"
ADMIN_KEY = "sk-ant-admin01-fake"
MTOK = Decimal(1_000_000)
TOKEN_TYPES = {
    "input": "uncached_input_tokens",
    "cache_write_5m": "cache_creation.ephemeral_5m_input_tokens",
    "cache_write_1h": "cache_creation.ephemeral_1h_input_tokens",
    "cache_read": "cache_read_input_tokens",
    "output": "output_tokens",
}
WORDS = {
    "input": "Input Tokens",
    "cache_write_5m": "Cache Write (5m)",
    "cache_write_1h": "Cache Write (1h)",
    "cache_read": "Cache Read",
    "output": "Output Tokens",
}


def usage_line(
    model: str,
    tokens: dict[str, int],
    *,
    api_key_id: str | None = "apikey_01fake",
    service_tier: str = "standard",
    web_search_requests: int = 0,
) -> dict[str, Any]:
    """One usage report result, grouped by model, API key and service tier."""
    return {
        "api_key_id": api_key_id,
        "workspace_id": None,
        "model": model,
        "service_tier": service_tier,
        "context_window": "0-200k",
        "inference_geo": "not_available",
        "uncached_input_tokens": tokens.get("input", 0),
        "cache_read_input_tokens": tokens.get("cache_read", 0),
        "cache_creation": {
            "ephemeral_5m_input_tokens": tokens.get("cache_write_5m", 0),
            "ephemeral_1h_input_tokens": tokens.get("cache_write_1h", 0),
        },
        "output_tokens": tokens.get("output", 0),
        "server_tool_use": {"web_search_requests": web_search_requests},
    }


def cost_lines(
    model: str, tokens: dict[str, int], usd_per_mtok: dict[str, Decimal]
) -> list[dict[str, Any]]:
    """The cost report results (grouped by description) of ``tokens`` at ``usd_per_mtok``."""
    lines = []
    for kind, count in tokens.items():
        if not count:
            continue
        cents = Decimal(count) * usd_per_mtok[kind] / MTOK * 100
        lines.append(
            {
                "amount": f"{cents.normalize():f}",
                "currency": "USD",
                "cost_type": "tokens",
                "description": f"{model} Usage - {WORDS[kind]}",
                "model": model,
                "service_tier": "standard",
                "token_type": TOKEN_TYPES[kind],
                "context_window": "0-200k",
                "inference_geo": "not_available",
                "workspace_id": None,
            }
        )
    return lines


def other_cost(cost_type: str, cents: str) -> dict[str, Any]:
    """A cost line with no model or token type (web search, code execution)."""
    return {
        "amount": cents,
        "currency": "USD",
        "cost_type": cost_type,
        "description": cost_type.replace("_", " ").title(),
        "model": None,
        "service_tier": None,
        "token_type": None,
        "context_window": None,
        "inference_geo": None,
        "workspace_id": None,
    }


def _rfc3339(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


@dataclass
class FakeAdmin:
    """The ASGI app. ``usage``/``cost``: results per UTC day; ``page_size``: buckets a page."""

    usage: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    cost: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 2
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await lifespan(scope, receive, send):
            return
        path, query, headers = request_of(scope)
        self.requests.append((path, query, headers))
        status, body = self.answer(path, query, headers)
        await send_json(send, status, body, [(b"request-id", b"req_a")])

    def answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("x-api-key") != ADMIN_KEY:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return 401, {"type": "error", "error": error}
        reports = {USAGE_PATH: self.usage, COST_PATH: self.cost}
        if path not in reports:
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}
        start = datetime.fromisoformat(query["starting_at"][0]).astimezone(UTC).date()
        end_at = datetime.fromisoformat(query["ending_at"][0]).astimezone(UTC)
        days = []
        day = start
        while datetime(day.year, day.month, day.day, tzinfo=UTC) < end_at:
            days.append(day)
            day += timedelta(days=1)
        first = int(query.get("page", ["0"])[0])
        size = min(self.page_size, int(query.get("limit", ["7"])[0]))
        shown = days[first : first + size]
        data = [
            {
                "starting_at": _rfc3339(d),
                "ending_at": _rfc3339(d + timedelta(days=1)),
                "results": reports[path].get(d, []),
            }
            for d in shown
        ]
        more = first + size < len(days)
        return 200, {
            "data": data,
            "has_more": more,
            "next_page": str(first + size) if more else None,
        }
