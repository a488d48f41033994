"""The wire format module the fakes and the bench share, and what the bench may import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

from proxy.providers.anthropic import AnthropicTap
from proxy.usage import Usage
from tests.fakes import anthropic_format as wire
from tests.fakes.anthropic_upstream import DEFAULT_USAGE

ROOT = Path(__file__).resolve().parents[2]
# The distributions of every module `python -m bench.run`'s children load (the bench runs with
# nothing but the project installed, so none may come from the test extra).
PROBE = """
import sys
from importlib.metadata import packages_distributions
import bench.mock_upstream, bench.payloads
owners = packages_distributions()
print(" ".join(sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})))
"""


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_bench_mock_loads_nothing_from_the_test_extra() -> None:
    result = subprocess.run(  # noqa: S603 (our own interpreter on our own code)
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = {_name(d) for d in result.stdout.split()}
    test_only = {_name(r) for r in requires("tokenmeter") or [] if 'extra == "test"' in r}
    assert {"httptools", "uvloop"} <= loaded
    assert "anthropic" in test_only
    assert loaded & test_only == set()


def test_a_stream_built_from_a_message_reads_as_that_message() -> None:
    usage = DEFAULT_USAGE  # the fake's: a cache_creation split and a service_tier
    text = {"type": "text", "text": "Hi"}
    message = wire.message("msg_1", "claude-opus-4-8", [text], "end_turn", usage)
    stream = [
        wire.message_start(message),
        wire.ping(),
        wire.block_start(0, {"type": "text", "text": ""}),
        wire.block_delta(0, {"type": "text_delta", "text": "Hi"}),
        wire.block_stop(0),
        wire.message_delta("end_turn", wire.delta_usage(usage)),
        wire.message_stop(),
    ]
    tokens = Usage(input=11, cache_write_5m=40, cache_write_1h=20, cache_read=300, output=7)
    for body, content_type in (
        (b"".join(stream), "text/event-stream"),
        (json.dumps(message).encode(), "application/json"),
    ):
        tap = AnthropicTap(content_type, None)
        tap.feed(body)
        tap.finish()
        facts = tap.result()
        assert (facts.usage, facts.model, facts.stop_reason, facts.complete) == (
            tokens,
            "claude-opus-4-8",
            "end_turn",
            True,
        )
    start = json.loads(stream[0].split(b"data: ")[1])["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == (
        [],
        None,
        1,
    )
    assert "cache_creation" not in json.loads(stream[5].split(b"data: ")[1])["usage"]
