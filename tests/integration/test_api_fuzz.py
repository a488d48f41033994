"""schemathesis against the real proxy's ``/openapi.json``: no input makes an API route answer 500.

Every operation gets generated requests, valid and invalid (its examples, the schema's edge
values, random fuzzing, and stateful sequences that feed one answer into the next call), on
SQLite and on PostgreSQL (which refuses some values SQLite takes: NUL bytes, numeric overflow).
A fixed seed and a bounded number of examples keep the run repeatable and short; schemathesis
prints a curl line for each failure. Its first run found ``PATCH /api/v1/tasks/0
{"human_hours": 6.5e16}`` and ``GET /api/v1/reports/roi?team=%00``; each such finding also has
a targeted test (tests/integration/test_api_validation.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anthropic

from tests.conftest import Proxy
from tests.seed import PEOPLE_CSV

EXAMPLES = 30  # per operation and phase: ~15 s per database on 2 cores, well under a minute
SEED = 20261127


def _seed(proxy: Proxy) -> None:
    """A task with usage and people with pay, so reads find rows and stateful links resolve."""
    imported = proxy.http.post(
        "/api/v1/people/import", content=PEOPLE_CSV, headers={"content-type": "text/csv"}
    )
    assert imported.status_code == 200, imported.text
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0) as claude:
        claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-tokenmeter-task": "0", "x-tokenmeter-user": "ada"},
        )
    proxy.task("0", 1)


def test_no_generated_request_makes_the_api_answer_500(
    make_proxy: Callable[..., Proxy], db_url: str, tmp_path: Path
) -> None:
    proxy = make_proxy(database_url=db_url)
    _seed(proxy)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{proxy.url}/openapi.json",
        "--checks=not_a_server_error",
        f"--max-examples={EXAMPLES}",
        f"--seed={SEED}",
        "--continue-on-failure",
        "--no-color",
        "--workers=1",
        "--request-timeout=10",
    ]
    result = subprocess.run(  # noqa: S603 - our own command line
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-12000:]
    assert "29 selected / 29 total" in report  # every operation was tested
