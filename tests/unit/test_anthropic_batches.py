"""The Message Batches wire module: routes, create requests, results_url, result lines."""

from __future__ import annotations

import json

from proxy.batch_jobs import result_event_id
from proxy.providers import anthropic_batches as wire
from proxy.usage import Usage
from tests.fakes.anthropic_batches import SUCCEEDED_USAGE, _result


def test_routes() -> None:
    assert wire.create_route("POST", "/v1/messages/batches")
    assert not wire.create_route("GET", "/v1/messages/batches")
    assert wire.results_route("GET", "/v1/messages/batches/msgbatch_1/results") == "msgbatch_1"
    assert wire.results_route("GET", "/v1/messages/batches/a/b/results") is None
    assert wire.results_route("POST", "/v1/messages/batches/msgbatch_1/results") is None
    assert wire.object_route("GET", "/v1/messages/batches/msgbatch_1")
    assert wire.object_route("POST", "/v1/messages/batches/msgbatch_1/cancel")
    assert not wire.object_route("GET", "/v1/messages/batches/msgbatch_1/results")
    assert not wire.object_route("POST", "/v1/messages")


def test_created_batch_names_its_models_and_counts_its_requests() -> None:
    requests = [
        {"custom_id": str(i), "params": {"model": model, "max_tokens": 1, "messages": []}}
        for i, model in enumerate(("claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4-5"))
    ]
    body = json.dumps({"requests": requests}).encode()
    assert wire.created_batch(body) == ("claude-haiku-4-5,claude-sonnet-4-5", 3)
    assert wire.created_batch(b"not json") == (None, 0)


def test_results_url_moves_to_the_proxy_in_objects_and_pages() -> None:
    batch = {
        "id": "b",
        "type": "message_batch",
        "results_url": "https://api.anthropic.com/v1/messages/batches/b/results",
    }
    moved = wire.with_results_url(batch, "http://proxy:8080/u/ada")
    assert moved["results_url"] == "http://proxy:8080/u/ada/v1/messages/batches/b/results"
    page = wire.with_results_url({"data": [batch, {"id": "c", "results_url": None}]}, "http://p")
    assert [b["results_url"] for b in page["data"]] == [
        "http://p/v1/messages/batches/b/results",
        None,
    ]


def test_only_succeeded_lines_are_billed_and_at_the_batch_tier() -> None:
    params = {"model": "claude-sonnet-4-5", "max_tokens": 1, "messages": []}
    line = json.dumps(_result({"custom_id": "q-1", "params": params})).encode()
    read = wire.result_line(line)
    assert read is not None
    custom_id, facts = read
    assert custom_id == "q-1"
    assert facts.usage == Usage(input=1000, output=500)
    assert facts.service_tier == "batch" == SUCCEEDED_USAGE["service_tier"]
    for custom_id in ("err-1", "cancel-1", "exp-1"):
        unbilled = json.dumps(_result({"custom_id": custom_id, "params": params})).encode()
        assert wire.result_line(unbilled) is None
    assert wire.result_line(b"{") is None


def test_result_event_ids_are_stable_per_batch_and_custom_id() -> None:
    assert result_event_id("b", "q-1") == result_event_id("b", "q-1")
    assert result_event_id("b", "q-1") != result_event_id("b", "q-2")
    assert len(result_event_id("b", "q-1")) == 32
