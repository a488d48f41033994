"""The providers' billing reports, page by page: which report a page is, what its lines say.

The types here (``Page``, ``Bucket``, ``UsageLine``, ``CostLine``) are both providers'; this
module reads Anthropic's pages, ``providers.openai_admin`` OpenAI's, and
``providers.billing.read_page`` picks by the page's shape (or the provider the caller names).

Anthropic's Admin API answers two reports in the same envelope, ``{data: [bucket…], has_more,
next_page}``, each bucket ``{starting_at, ending_at, results: [line…]}`` (RFC 3339 times):

- ``GET /v1/organizations/usage_report/messages`` (``USAGE``): a line has ``uncached_input_tokens``
  (the Messages API's ``input_tokens``), ``cache_read_input_tokens``, ``cache_creation``
  ``{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``, ``output_tokens``,
  ``server_tool_use.web_search_requests``, and the ``group_by[]`` fields asked for (``model``,
  ``api_key_id``, ``service_tier``, ``workspace_id``, ``context_window``, ``inference_geo``).
- ``GET /v1/organizations/cost_report`` (``COST``): a line has ``amount``, a decimal string in the
  currency's lowest unit (``"123.45"`` USD is $1.2345), ``currency``, and with
  ``group_by[]=description`` its ``cost_type`` (tokens, web_search, code_execution,
  session_usage), ``model``, ``token_type`` (the usage report's field names) and
  ``service_tier``. Priority Tier costs are not in it.

(platform.claude.com/docs/en/api/admin/usage_report and …/cost_report.)

``read_anthropic_page`` checks a decoded page and turns it into typed lines; the shape tells the
report (a line with ``amount`` is a cost line, one with ``uncached_input_tokens`` a usage line),
or the caller says which it asked for. Anything else is a ``PageError`` whose message is one line.
Pure: no I/O; token kinds in the vocabulary of ``proxy.usage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from proxy.usage import TOKEN_KINDS, as_utc

ANTHROPIC = "anthropic"
USAGE, COST = "usage", "cost"
ENDPOINTS: dict[str, str] = {
    USAGE: "/v1/organizations/usage_report/messages",
    COST: "/v1/organizations/cost_report",
}
# The usage report's token fields (and the cost report's ``token_type`` values) -> token kind.
TOKEN_FIELDS: dict[str, str] = {
    "uncached_input_tokens": "input",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write_5m",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write_1h",
    "cache_read_input_tokens": "cache_read",
    "output_tokens": "output",
}
TOKENS = "tokens"  # the cost_type of token costs
PRIORITY_TIERS = frozenset({"priority", "priority_on_demand"})  # not in the cost report
CENTS = Decimal(100)
MAX_COUNT = 10**15  # far above any real report; a bigger number is a broken page


class PageError(ValueError):
    """A page that is not a usage or cost report page (the message is one line)."""


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One result of a usage report bucket."""

    starting_at: datetime
    model: str | None
    api_key_id: str | None
    service_tier: str | None
    tokens: dict[str, int]  # by ``TOKEN_KINDS`` kind
    web_search_requests: int = 0


@dataclass(frozen=True, slots=True)
class CostLine:
    """One result of a cost report bucket, in dollars (the page's cents / 100)."""

    starting_at: datetime
    amount_usd: Decimal
    currency: str
    cost_type: str | None
    model: str | None
    token_kind: str | None  # ``token_type`` as a token kind
    service_tier: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class Bucket:
    starting_at: datetime
    ending_at: datetime
    lines: tuple[UsageLine | CostLine, ...]


@dataclass(frozen=True, slots=True)
class Page:
    """A checked page: its report, buckets, and where the next page is."""

    endpoint: str  # USAGE or COST
    buckets: tuple[Bucket, ...]
    has_more: bool = False
    next_page: str | None = None
    lines: int = 0  # result lines over all buckets
    provider: str = ANTHROPIC

    @property
    def starts_at(self) -> datetime | None:
        return min((b.starting_at for b in self.buckets), default=None)

    @property
    def ends_at(self) -> datetime | None:
        return max((b.ending_at for b in self.buckets), default=None)


def read_anthropic_page(page: object, endpoint: str | None = None) -> Page:
    """An Anthropic report page (module doc); ``PageError`` on anything else."""
    if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
        raise PageError(_not_a_page(page))
    if page.get("object") == "page":
        raise PageError("an OpenAI organization usage/costs page, not an Anthropic report")
    if not isinstance(page.get("has_more", False), bool):
        raise PageError("has_more is not true or false")
    next_page = page.get("next_page")
    if next_page is not None and not isinstance(next_page, str):
        raise PageError("next_page is not a string")
    endpoint = endpoint or _endpoint_of(page["data"])
    buckets = tuple(_bucket(i, b, endpoint) for i, b in enumerate(page["data"]))
    lines = sum(len(b.lines) for b in buckets)
    return Page(endpoint, buckets, bool(page.get("has_more")), next_page, lines)


def _not_a_page(page: object) -> str:
    if isinstance(page, Mapping) and isinstance(page.get("error"), Mapping):
        return f"an error answer, not a report: {str(page['error'].get('message'))[:200]}"
    return "not a usage or cost report page (expected an object with a data list)"


def _endpoint_of(data: list[Any]) -> str:
    for bucket in data:
        results = bucket.get("results") if isinstance(bucket, Mapping) else None
        for line in results if isinstance(results, list) else ():
            if isinstance(line, Mapping) and "amount" in line:
                return COST
            if isinstance(line, Mapping) and "uncached_input_tokens" in line:
                return USAGE
    raise PageError("no result line tells whether this is a usage or a cost report page")


def _bucket(index: int, bucket: object, endpoint: str) -> Bucket:
    where = f"data[{index}]"
    if not isinstance(bucket, Mapping) or not isinstance(bucket.get("results"), list):
        raise PageError(f"{where} is not a bucket with a results list")
    start = _time(bucket.get("starting_at"), f"{where}.starting_at")
    end = _time(bucket.get("ending_at"), f"{where}.ending_at")
    if end <= start:
        raise PageError(f"{where} ends before it starts")
    read = _usage_line if endpoint == USAGE else _cost_line
    lines = tuple(
        read(line, start, f"{where}.results[{n}]") for n, line in enumerate(bucket["results"])
    )
    return Bucket(start, end, lines)


def _usage_line(line: object, start: datetime, where: str) -> UsageLine:
    if not isinstance(line, Mapping) or "uncached_input_tokens" not in line:
        raise PageError(f"{where} is not a usage line (no uncached_input_tokens)")
    cache = line.get("cache_creation") or {}
    tools = line.get("server_tool_use") or {}
    if not isinstance(cache, Mapping) or not isinstance(tools, Mapping):
        raise PageError(f"{where}: cache_creation and server_tool_use must be objects")
    flat = {**line, **{f"cache_creation.{k}": v for k, v in cache.items()}}
    tokens = {
        kind: count_field(flat.get(name, 0), f"{where}.{name}")
        for name, kind in TOKEN_FIELDS.items()
    }
    searches = count_field(tools.get("web_search_requests", 0), f"{where}.web_search_requests")
    return UsageLine(
        start,
        text_field(line, "model", where),
        text_field(line, "api_key_id", where),
        text_field(line, "service_tier", where),
        {kind: tokens[kind] for kind in TOKEN_KINDS},
        searches,
    )


def _cost_line(line: object, start: datetime, where: str) -> CostLine:
    if not isinstance(line, Mapping) or "amount" not in line:
        raise PageError(f"{where} is not a cost line (no amount)")
    amount = line["amount"]
    try:
        cents = Decimal(amount) if isinstance(amount, str) else Decimal("NaN")
    except InvalidOperation:
        cents = Decimal("NaN")
    if not cents.is_finite() or abs(cents) > MAX_COUNT:
        raise PageError(f"{where}.amount is not a decimal string of cents (got {amount!r:.40})")
    token_type = text_field(line, "token_type", where)
    if token_type is not None and token_type not in TOKEN_FIELDS:
        raise PageError(f"{where}.token_type {token_type!r:.60} is not a known token type")
    return CostLine(
        start,
        cents / CENTS,
        text_field(line, "currency", where) or "USD",
        text_field(line, "cost_type", where),
        text_field(line, "model", where),
        None if token_type is None else TOKEN_FIELDS[token_type],
        text_field(line, "service_tier", where),
        text_field(line, "description", where),
    )


def _time(value: object, where: str) -> datetime:
    try:
        if not isinstance(value, str):
            raise ValueError
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise PageError(f"{where} is not an RFC 3339 time (got {value!r:.40})") from None


def count_field(value: object, where: str) -> int:
    """A token or request count of a page (``PageError`` naming ``where`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise PageError(f"{where} is not a count of 0 or more (got {value!r:.40})")
    return value


def text_field(line: Mapping[str, Any], name: str, where: str) -> str | None:
    """``line[name]``: a string or None (``PageError`` otherwise)."""
    value = line.get(name)
    if value is not None and not isinstance(value, str):
        raise PageError(f"{where}.{name} is not a string or null")
    return value
