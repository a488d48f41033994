"""Anthropic Message Batches on the wire: which exchange is which, and what each one says.

Why it exists: batch traffic never passes ``/v1/messages``, so the usage tap never sees it. The
proxy meters a batch where its results come back (``batch_jobs``); this module is the pure part
of that: naming the route, reading a create request (its model(s) and request count), reading
a batch object (its id), pointing its ``results_url`` at the proxy, and reading one line of a
results file (JSONL) as the ``ResponseFacts`` of a ``succeeded`` message.

Contract (Anthropic's Message Batches API reference and batch-processing guide):
- ``POST /v1/messages/batches`` creates; ``GET /v1/messages/batches`` lists; ``GET .../{id}``,
  ``POST .../{id}/cancel`` answer a batch object; ``GET .../{id}/results`` is JSONL, one
  ``{"custom_id", "result": {"type": succeeded|errored|canceled|expired, ...}}`` per request.
- Only ``succeeded`` lines are billed (at the batch rate): they come back here with
  ``service_tier`` "batch", whatever the line's usage says. Every other line is unbilled: None.
- Nothing here raises on what upstream sent; a line that does not parse is None.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from proxy.providers.anthropic import message_facts
from proxy.providers.body import as_object, as_str, load_object
from proxy.usage import ResponseFacts

BATCHES = "/v1/messages/batches"
BATCH_TIER = "batch"
MAX_MODELS_TEXT = 200  # the models a batch names, joined, are kept to this many characters


def create_route(method: str, path: str) -> bool:
    """Whether this exchange creates a batch."""
    return method == "POST" and path == BATCHES


def results_route(method: str, path: str) -> str | None:
    """The batch id of a results download, else None."""
    if method != "GET" or not path.startswith(BATCHES + "/") or not path.endswith("/results"):
        return None
    batch_id = path[len(BATCHES) + 1 : -len("/results")]
    return batch_id if batch_id and "/" not in batch_id else None


def object_route(method: str, path: str) -> bool:
    """Whether the answer is a batch object (or a page of them) that may carry ``results_url``."""
    if not path.startswith(BATCHES) or results_route(method, path) is not None:
        return False
    return path == BATCHES or path.startswith(BATCHES + "/")


def created_batch(request: bytes) -> tuple[str | None, int]:
    """(the models the create request names, joined; how many requests it holds)."""
    payload = load_object(request)
    requests = payload.get("requests") if payload else None
    if not isinstance(requests, list):
        return None, 0
    models = sorted(
        {m for r in requests if (m := as_str(as_object(as_object(r).get("params")).get("model")))}
    )
    joined = ",".join(models)[:MAX_MODELS_TEXT]
    return joined or None, len(requests)


def batch_id(batch: dict[str, Any]) -> str | None:
    """The id of a batch object."""
    return as_str(batch.get("id")) if batch.get("type") == "message_batch" else None


def with_results_url(payload: dict[str, Any], base: str) -> dict[str, Any]:
    """``payload`` (a batch object or a list page) with every ``results_url`` under ``base``:
    the same path and query, on the proxy. A batch without one (not ended) is left as it is."""
    if isinstance(payload.get("data"), list):
        data = [with_results_url(as_object(item), base) for item in payload["data"]]
        return {**payload, "data": data}
    url = as_str(payload.get("results_url"))
    if url is None:
        return payload
    parts = urlsplit(url)
    return {
        **payload,
        "results_url": base + parts.path + (f"?{parts.query}" if parts.query else ""),
    }


def result_line(line: bytes) -> tuple[str, ResponseFacts] | None:
    """(custom_id, facts) of one results line whose request succeeded; None for anything else
    (errored, canceled, expired: unbilled; or a line that is not a result)."""
    payload = load_object(line)
    if payload is None:
        return None
    custom_id = as_str(payload.get("custom_id"))
    result = as_object(payload.get("result"))
    if custom_id is None or result.get("type") != "succeeded":
        return None
    facts = message_facts(as_object(result.get("message")))
    facts.service_tier = BATCH_TIER
    return custom_id, facts


def dumps(payload: dict[str, Any]) -> bytes:
    """JSON as Anthropic sends it (compact separators do not matter to any client)."""
    return json.dumps(payload).encode()
