"""OpenAI's organization usage and costs pages: which report a page is, and what its lines say.

OpenAI's Admin API (an Admin key, ``Authorization: Bearer``) answers both reports in one
envelope, ``{object: "page", data: [bucket…], has_more, next_page}``, each bucket
``{object: "bucket", start_time, end_time, results: [line…]}`` (Unix seconds):

- ``GET /v1/organization/usage/completions`` (``USAGE``): a line is an
  ``organization.usage.completions.result`` with ``input_tokens`` (ALL input tokens: cached
  and cache-write ones included), ``input_cached_tokens``, ``input_cache_write_tokens`` (30-minute
  retention) and ``input_cache_write_12h_tokens`` (all optional), ``output_tokens``,
  ``num_model_requests``, and the ``group_by`` fields asked for (``model``, ``api_key_id``,
  ``project_id``, ``user_id``, ``batch``, ``service_tier``). As the proxy counts a response
  (``providers.openai``): ``cache_read`` = cached, ``cache_write_5m`` = 30-minute writes,
  ``cache_write_1h`` = 12-hour writes, ``input`` = input_tokens − those; ``output`` = output.
  Audio and image tokens are not told apart (the proxy doesn't either).
- ``GET /v1/organization/usage/embeddings`` (``EMBEDDINGS``, stored as its own report): a line
  is an ``organization.usage.embeddings.result`` with ``input_tokens`` (all ``input``),
  ``num_model_requests`` and the same ``group_by`` fields. The other usage endpoints (images,
  audio, moderations, vector stores, code interpreter) are not read: the proxy meters none of
  them by tokens.
- ``GET /v1/organization/costs`` (``COST``): a line is an ``organization.costs.result`` with
  ``amount {value, currency}``: a JSON number in DOLLARS (not cents as Anthropic's), read as a
  Decimal from its text, never through a float; with ``group_by=line_item`` a ``line_item``
  label, ``"<model>, input"``, ``"<model>, cached input"`` or ``"<model>, output"`` for token
  costs (those become ``tokens`` costs of that model and kind), anything else (``"web search
  tool calls"``, ``"assistants api | file search"``, a batch or fine-tuning line) is a cost
  without a model, kept under its own label.

(platform.openai.com/docs/api-reference/usage/completions and …/usage/costs.)

``read_openai_page`` checks a decoded page (decode with ``parse_float=Decimal``) and turns it into
the same typed lines as Anthropic's (``providers.admin``). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from proxy.providers.admin import (
    COST,
    MAX_COUNT,
    TOKENS,
    USAGE,
    Bucket,
    CostLine,
    Page,
    PageError,
    UsageLine,
    count_field,
    text_field,
)
from proxy.usage import TOKEN_KINDS

OPENAI = "openai"
EMBEDDINGS = "usage_embeddings"  # a usage report of its own: a newer one replaces only itself
ENDPOINTS: dict[str, str] = {
    USAGE: "/v1/organization/usage/completions",
    EMBEDDINGS: "/v1/organization/usage/embeddings",
    COST: "/v1/organization/costs",
}
USAGE_OBJECT = "organization.usage.completions.result"
EMBEDDINGS_OBJECT = "organization.usage.embeddings.result"
COST_OBJECT = "organization.costs.result"
# A line item of token costs: "<model>, <kind>" (no "|": "evals | gpt-4o, input" is a surface
# priced apart, kept as a cost without a model).
_LINE_ITEM = re.compile(r"^(?P<model>[^|,]+?)\s*,\s*(?P<kind>input|cached input|output)$")
LINE_ITEM_KINDS = {"input": "input", "cached input": "cache_read", "output": "output"}
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def is_openai_page(page: object) -> bool:
    """Whether ``page`` is in OpenAI's envelope (``object: "page"``)."""
    return isinstance(page, Mapping) and page.get("object") == "page"


def read_openai_page(page: object, endpoint: str | None = None) -> Page:
    """``page`` (decoded JSON) as a ``Page`` of ``endpoint``, or of the report its lines tell
    when ``endpoint`` is None. ``PageError`` (one line) when it is neither."""
    if not is_openai_page(page) or not isinstance(page, Mapping):
        raise PageError("not an OpenAI page (expected object 'page')")
    if not isinstance(page.get("data"), list):
        raise PageError("an OpenAI page without a data list")
    if not isinstance(page.get("has_more", False), bool):
        raise PageError("has_more is not true or false")
    next_page = page.get("next_page")
    if next_page is not None and not isinstance(next_page, str):
        raise PageError("next_page is not a string")
    endpoint = endpoint or _endpoint_of(page["data"])
    buckets = tuple(_bucket(i, b, endpoint) for i, b in enumerate(page["data"]))
    lines = sum(len(b.lines) for b in buckets)
    return Page(endpoint, buckets, bool(page.get("has_more")), next_page, lines, OPENAI)


def _results(bucket: Mapping[str, Any]) -> object:
    # "results" in every answer; the generated reference names it "result" for costs.
    return bucket.get("results", bucket.get("result"))


def _endpoint_of(data: list[Any]) -> str:
    for bucket in data:
        results = _results(bucket) if isinstance(bucket, Mapping) else None
        for line in results if isinstance(results, list) else ():
            kind = line.get("object") if isinstance(line, Mapping) else None
            if kind == USAGE_OBJECT:
                return USAGE
            if kind == EMBEDDINGS_OBJECT:
                return EMBEDDINGS
            if kind == COST_OBJECT:
                return COST
            if isinstance(kind, str) and kind.startswith("organization.usage."):
                raise PageError(
                    f"an OpenAI {kind.split('.')[2]} usage page: only completions and "
                    "embeddings usage and costs are reconciled"
                )
    raise PageError("no result line tells whether this is a usage or a costs page")


def _bucket(index: int, bucket: object, endpoint: str) -> Bucket:
    where = f"data[{index}]"
    results = _results(bucket) if isinstance(bucket, Mapping) else None
    if not isinstance(bucket, Mapping) or not isinstance(results, list):
        raise PageError(f"{where} is not a bucket with a results list")
    start = _time(bucket.get("start_time"), f"{where}.start_time")
    end = _time(bucket.get("end_time"), f"{where}.end_time")
    if end <= start:
        raise PageError(f"{where} ends before it starts")
    read = {USAGE: _usage_line, EMBEDDINGS: _embeddings_line}.get(endpoint, _cost_line)
    return Bucket(
        start,
        end,
        tuple(read(line, start, f"{where}.results[{n}]") for n, line in enumerate(results)),
    )


def _usage_line(line: object, start: datetime, where: str) -> UsageLine:
    if not isinstance(line, Mapping) or line.get("object") != USAGE_OBJECT:
        raise PageError(f"{where} is not an {USAGE_OBJECT}")
    total = count_field(line.get("input_tokens"), f"{where}.input_tokens")
    cached = count_field(line.get("input_cached_tokens") or 0, f"{where}.input_cached_tokens")
    written = count_field(
        line.get("input_cache_write_tokens") or 0, f"{where}.input_cache_write_tokens"
    )
    written_12h = count_field(
        line.get("input_cache_write_12h_tokens") or 0, f"{where}.input_cache_write_12h_tokens"
    )
    if cached + written + written_12h > total:
        raise PageError(f"{where}: cached and cache-write tokens exceed input_tokens ({total})")
    tokens = {
        "input": total - cached - written - written_12h,
        "cache_write_5m": written,
        "cache_write_1h": written_12h,
        "cache_read": cached,
        "output": count_field(line.get("output_tokens"), f"{where}.output_tokens"),
    }
    count_field(line.get("num_model_requests", 0), f"{where}.num_model_requests")
    return UsageLine(
        start,
        text_field(line, "model", where),
        text_field(line, "api_key_id", where),
        text_field(line, "service_tier", where),
        {kind: tokens[kind] for kind in TOKEN_KINDS},
    )


def _embeddings_line(line: object, start: datetime, where: str) -> UsageLine:
    if not isinstance(line, Mapping) or line.get("object") != EMBEDDINGS_OBJECT:
        raise PageError(f"{where} is not an {EMBEDDINGS_OBJECT}")
    tokens = dict.fromkeys(TOKEN_KINDS, 0)
    tokens["input"] = count_field(line.get("input_tokens"), f"{where}.input_tokens")
    count_field(line.get("num_model_requests", 0), f"{where}.num_model_requests")
    return UsageLine(
        start, text_field(line, "model", where), text_field(line, "api_key_id", where), None, tokens
    )


def _cost_line(line: object, start: datetime, where: str) -> CostLine:
    if not isinstance(line, Mapping) or line.get("object") != COST_OBJECT:
        raise PageError(f"{where} is not an {COST_OBJECT}")
    amount = line.get("amount")
    if not isinstance(amount, Mapping):
        raise PageError(f"{where}.amount is not an object with a value and a currency")
    value = _dollars(amount.get("value"), f"{where}.amount.value")
    currency = amount.get("currency") or "usd"
    if not isinstance(currency, str):
        raise PageError(f"{where}.amount.currency is not a string")
    label = text_field(line, "line_item", where)
    found = _LINE_ITEM.match(label.strip()) if label is not None else None
    model = found.group("model") if found else None
    kind = LINE_ITEM_KINDS[found.group("kind")] if found else None
    return CostLine(
        start,
        value,
        currency.upper(),
        TOKENS if found else (label or "not by line item"),
        model,
        kind,
        None,
        label,
    )


def _dollars(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PageError(f"{where} is not a number (got {value!r:.40})")
    try:
        # A float only when the caller decoded without parse_float=Decimal: its shortest repr
        # is the text OpenAI wrote.
        dollars = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        dollars = Decimal("NaN")
    if not dollars.is_finite() or abs(dollars) > MAX_COUNT:
        raise PageError(f"{where} is not a finite amount (got {value!r:.40})")
    return dollars


def _time(value: object, where: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIME:
        raise PageError(f"{where} is not a Unix time in seconds (got {value!r:.40})")
    return datetime.fromtimestamp(value, UTC)
