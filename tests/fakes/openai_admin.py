"""A fake OpenAI organization usage and costs API, paginated, in the real shapes.

Serves ``GET /v1/organization/usage/completions``, ``…/usage/embeddings`` and
``GET /v1/organization/costs``
(platform.openai.com/docs/api-reference/usage): ``{object: "page", data, has_more, next_page}``,
one daily bucket ``{object: "bucket", start_time, end_time, results}`` (Unix seconds) per UTC day
from ``start_time`` up to ``end_time`` (default: now), ``limit`` buckets a page (default 7) and at
most ``page_size``, ``next_page`` an opaque cursor. Usage results are
``organization.usage.completions.result`` (``input_tokens`` counting cached ones) and
``organization.usage.embeddings.result``, cost results
``organization.costs.result`` with ``amount {value, currency: "usd"}``, the value a JSON number of
dollars, one per ``line_item`` ("<model>, input" / "cached input" / "output"). The results of a
day are what a test put in ``usage[day]`` / ``embeddings[day]`` / ``cost[day]``, built with
``usage_result``, ``embeddings_result`` and ``cost_results``; a field not grouped by is null,
as the real API answers it.
Requests without ``Authorization: Bearer ADMIN_KEY`` get OpenAI's 401 error body. Every
request is kept in ``requests``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.fakes.asgi import lifespan, request_of, send_json

USAGE_PATH = "/v1/organization/usage/completions"
EMBEDDINGS_PATH = "/v1/organization/usage/embeddings"
COST_PATH = "/v1/organization/costs"
ADMIN_KEY = "sk-admin-fake"
MTOK = Decimal(1_000_000)
LINE_ITEMS = {"input": "input", "cache_read": "cached input", "output": "output"}
USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")
COST_GROUPS = ("project_id", "line_item")


def usage_result(
    model: str,
    tokens: dict[str, int],
    *,
    api_key_id: str = "key_fake01",
    project_id: str = "proj_fake01",
    requests: int = 3,
) -> dict[str, Any]:
    """One completions usage result from tokens by kind: ``input_tokens`` is uncached input +
    cached + cache writes, as OpenAI counts it."""
    written = tokens.get("cache_write_5m", 0)
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": tokens.get("input", 0) + tokens.get("cache_read", 0) + written,
        "input_cached_tokens": tokens.get("cache_read", 0),
        "input_cache_write_tokens": written,
        "output_tokens": tokens.get("output", 0),
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": requests,
        "project_id": project_id,
        "user_id": None,
        "api_key_id": api_key_id,
        "model": model,
        "batch": None,
        "service_tier": None,
    }


def embeddings_result(
    model: str, input_tokens: int, *, api_key_id: str = "key_fake01", requests: int = 1
) -> dict[str, Any]:
    """One embeddings usage result."""
    return {
        "object": "organization.usage.embeddings.result",
        "input_tokens": input_tokens,
        "num_model_requests": requests,
        "project_id": "proj_fake01",
        "user_id": None,
        "api_key_id": api_key_id,
        "model": model,
    }


def cost_results(
    model: str, tokens: dict[str, int], usd_per_mtok: dict[str, Decimal]
) -> list[dict[str, Any]]:
    """The costs results (grouped by line item) of ``tokens`` at ``usd_per_mtok``."""
    lines = []
    for kind, words in LINE_ITEMS.items():
        if tokens.get(kind):
            usd = Decimal(tokens[kind]) * usd_per_mtok[kind] / MTOK
            lines.append(cost_result(f"{model}, {words}", usd))
    return lines


def cost_result(line_item: str | None, usd: Decimal) -> dict[str, Any]:
    """One costs result; ``usd`` goes out as a JSON number (``page_json``)."""
    return {
        "object": "organization.costs.result",
        "amount": {"value": usd, "currency": "usd"},
        "line_item": line_item,
        "project_id": "proj_fake01",
    }


def page_json(body: object) -> str:
    """``body`` as JSON, each ``Decimal`` written as a JSON number with exactly its digits (as
    OpenAI writes its amounts), never through a float."""
    marked = json.dumps(body, default=lambda o: f"@@decimal:{o.normalize():f}@@")
    return re.sub(r'"@@decimal:(-?[0-9.]+)@@"', r"\1", marked)


def _cursor(index: int) -> str:
    return base64.b64encode(f"bucket:{index:08d}".encode()).decode()


def _index(cursor: str) -> int:
    return int(base64.b64decode(cursor).decode().split(":")[1])


@dataclass
class FakeOpenAIAdmin:
    """The ASGI app. ``usage``/``cost``: results per UTC day; ``page_size``: buckets a page."""

    usage: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    cost: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    embeddings: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 2
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await lifespan(scope, receive, send):
            return
        path, query, headers = request_of(scope)
        self.requests.append((path, query, headers))
        status, body = self.answer(path, query, headers)
        await send_json(send, status, page_json(body), [(b"x-request-id", b"req_o")])

    def answer(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("authorization") != f"Bearer {ADMIN_KEY}":
            return 401, _error("Incorrect API key provided.", "invalid_api_key")
        reports = {
            USAGE_PATH: (self.usage, USAGE_GROUPS),
            EMBEDDINGS_PATH: (self.embeddings, USAGE_GROUPS[:4]),
            COST_PATH: (self.cost, COST_GROUPS),
        }
        if path not in reports:
            return 404, _error(f"Invalid URL (GET {path})", None)
        results, allowed = reports[path]
        groups = query.get("group_by", [])
        if any(g not in allowed for g in groups) or "group_by[]" in query:
            return 400, _error(f"Invalid group_by: {groups or query.get('group_by[]')}", None)
        if query.get("bucket_width", ["1d"]) != ["1d"]:
            return 400, _error("this fake serves daily buckets only", None)
        start = datetime.fromtimestamp(int(query["start_time"][0]), UTC).date()
        end_at = (
            datetime.fromtimestamp(int(query["end_time"][0]), UTC)
            if "end_time" in query
            else datetime.now(UTC)
        )
        days = []
        day = start
        while datetime(day.year, day.month, day.day, tzinfo=UTC) < end_at:
            days.append(day)
            day += timedelta(days=1)
        first = _index(query["page"][0]) if "page" in query else 0
        size = min(self.page_size, int(query.get("limit", ["7"])[0]))
        data = [
            {
                "object": "bucket",
                "start_time": _unix(d),
                "end_time": _unix(d + timedelta(days=1)),
                "results": [_grouped(r, groups, allowed) for r in results.get(d, [])],
            }
            for d in days[first : first + size]
        ]
        more = first + size < len(days)
        return 200, {
            "object": "page",
            "data": data,
            "has_more": more,
            "next_page": _cursor(first + size) if more else None,
        }


def _grouped(result: dict[str, Any], groups: list[str], allowed: tuple[str, ...]) -> dict[str, Any]:
    """A result as the API answers it: the fields not grouped by are null."""
    return {k: (None if k in allowed and k not in groups else v) for k, v in result.items()}


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _error(message: str, code: str | None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
