"""A fake Message Batches API, in the shapes of Anthropic's reference (and the Python SDK's
``MessageBatch``, ``MessageBatchIndividualResponse`` types), mounted in ``FakeAnthropic``.

- ``POST /v1/messages/batches``: a batch ``in_progress``, every request ``processing``;
  ``GET /v1/messages/batches``: one page of them all, the newest first.
- ``GET /v1/messages/batches/{id}``: the batch, ``ended`` from the first retrieve on, with its
  ``results_url`` on this server (as the real API names its own host).
- ``GET /v1/messages/batches/{id}/results``: JSONL (``application/binary``, the type the SDK
  asks for), one line per request. A request's ``custom_id`` picks its result: ``err…``
  errored, ``cancel…`` canceled, ``exp…`` expired, anything else succeeded with
  ``SUCCEEDED_USAGE`` (``service_tier`` "batch") from the model the request named.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import anthropic_format as wire

SUCCEEDED_USAGE: dict[str, Any] = {
    "input_tokens": 1000,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 500,
    "service_tier": "batch",
}
_CREATED = "2026-11-27T09:00:00Z"
_ENDED = "2026-11-27T09:20:00Z"
_EXPIRES = "2026-11-28T09:00:00Z"


@dataclass
class FakeBatches:
    """State of the batches created on this fake: id -> (create request, ended)."""

    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    downloads: int = 0

    def answer(self, method: str, path: str, body: bytes, host: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a batch path."""
        rest = path.removeprefix("/v1/messages/batches").strip("/")
        if method == "POST" and not rest:
            return self._create(body)
        if not rest:
            return 200, "application/json", json.dumps(self._page(host)).encode()
        batch_id, _, tail = rest.partition("/")
        if batch_id not in self.batches:
            return 404, "application/json", json.dumps(wire.error("not_found_error", "x")).encode()
        if tail == "results":
            self.downloads += 1
            return 200, "application/binary", self._results(batch_id)
        self.batches[batch_id]["ended"] = True
        return 200, "application/json", json.dumps(self._object(batch_id, host)).encode()

    def _create(self, body: bytes) -> tuple[int, str, bytes]:
        requests = json.loads(body)["requests"]
        batch_id = f"msgbatch_{uuid.uuid4().hex[:24]}"
        self.batches[batch_id] = {"requests": requests, "ended": False}
        return 200, "application/json", json.dumps(self._object(batch_id, "")).encode()

    def _page(self, host: str) -> dict[str, Any]:
        ids = list(reversed(self.batches))  # the newest first
        data = [self._object(batch_id, host) for batch_id in ids]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}

    def _object(self, batch_id: str, host: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        requests = batch["requests"]
        ended = batch["ended"]
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        for request in requests:
            counts[_result_type(request["custom_id"]) if ended else "processing"] += 1
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "ended_at": _ENDED if ended else None,
            "created_at": _CREATED,
            "expires_at": _EXPIRES,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": (
                f"http://{host}/v1/messages/batches/{batch_id}/results" if ended else None
            ),
        }

    def _results(self, batch_id: str) -> bytes:
        lines = [_result(r) for r in self.batches[batch_id]["requests"]]
        return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _result_type(custom_id: str) -> str:
    for prefix, kind in (("err", "errored"), ("cancel", "canceled"), ("exp", "expired")):
        if custom_id.startswith(prefix):
            return kind
    return "succeeded"


def _result(request: dict[str, Any]) -> dict[str, Any]:
    custom_id = request["custom_id"]
    kind = _result_type(custom_id)
    result: dict[str, Any] = {"type": kind}
    if kind == "errored":
        result["error"] = wire.error("invalid_request_error", "max_tokens: field required")
    elif kind == "succeeded":
        params = request["params"]
        usage = dict(SUCCEEDED_USAGE)
        content = [{"type": "text", "text": "Batch answer."}]
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        result["message"] = wire.message(message_id, params["model"], content, "end_turn", usage)
    return {"custom_id": custom_id, "result": result}
