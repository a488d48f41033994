"""The first hour of a new user (issue 15): the CLI from any directory against the running
proxy's database, the start-up line, the access log, the docs offline, CSV from /usage, and the
small glitches that were seen (each one reproduced here)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest

from proxy.config import default_database_url
from tests.conftest import Proxy

TOKENMETER = Path(sys.executable).parent / "tokenmeter"


def cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``tokenmeter …`` as a person runs it: its own process, in ``cwd``."""
    return subprocess.run(  # noqa: S603 (our own console script)
        [str(TOKENMETER), *argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ask(proxy: Proxy, task: str, **headers: str) -> None:
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-k", max_retries=0) as client:
        client.messages.create(
            model="claude-opus-4-8",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-tokenmeter-task": task, "x-tokenmeter-user": "alice", **headers},
        )


def test_cli_from_another_directory_reads_the_running_proxys_default_database(
    make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    """The proxy and the CLI both use the default database (in the data directory); the CLI
    runs from the folder where finance keeps its CSV and creates nothing there."""
    proxy = make_proxy(database_url=default_database_url())
    ask(proxy, "FIN-1")
    proxy.task("FIN-1", 1)
    finance = tmp_path / "finance"
    finance.mkdir()
    (finance / "pay.csv").write_text(
        "user,team,annual_compensation,currency\nalice,core,150000,USD\n"
    )
    done = cli("people", "import", "pay.csv", cwd=finance)
    assert (done.returncode, done.stdout) == (0, "imported 1 people records from pay.csv\n")
    done = cli("usage", "--by", "user", cwd=finance)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].split()[:2] == ["alice", "1"]  # after window, header
    assert sorted(p.name for p in finance.iterdir()) == ["pay.csv"]


def test_a_missing_database_is_one_line_and_is_not_created(tmp_path: Path) -> None:
    """Before: an empty ./tokenmeter.db was created and a 130-line traceback printed."""
    (tmp_path / "pay.csv").write_text("user,team,annual_compensation,currency\na,b,1,USD\n")
    done = cli("people", "import", "pay.csv", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("tokenmeter: no database at ")
    assert "--database URL or TOKENMETER_DATABASE_URL" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pay.csv"]


def test_start_up_line_and_json_access_log(
    make_proxy: Callable[..., Proxy], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenmeter")
    proxy = make_proxy(access_log="json", admin_token="a-secret-admin-token-value")
    ready = [r.getMessage() for r in caplog.records if "tokenmeter ready" in r.getMessage()]
    assert len(ready) == 1
    assert "anthropic -> http://127.0.0.1:" in ready[0]
    assert "/api/: admin token" in ready[0]
    assert "a-secret-admin-token-value" not in ready[0]
    ask(proxy, "LOG-1", **{"x-tokenmeter-team": "core"})
    lines = [r.getMessage() for r in caplog.records if r.name == "tokenmeter.access"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == "ok"
    assert entry["http_status"] == 200
    assert entry["model"] == "claude-opus-4-8"
    assert entry["tokens"] == {
        "input": 11,
        "cache_write_5m": 40,
        "cache_write_1h": 20,
        "cache_read": 300,
        "output": 7,
    }
    assert entry["cost_usd"] == "0.0008300000"  # exact, as stored
    assert (entry["user"], entry["team"], entry["task"]) == ("alice", "core", "LOG-1")
    assert entry["key_fingerprint"].startswith("fp_")
    assert "sk-ant-k" not in lines[0]
    assert "hi" not in json.loads(lines[0]).values()


def test_no_access_log_by_default(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tokenmeter")
    ask(proxy, "LOG-2")
    proxy.task("LOG-2", 1)
    assert [r for r in caplog.records if r.name == "tokenmeter.access"] == []
    assert proxy.app.parts.forwarder._sink._access_log is None  # type: ignore[attr-defined]  # the Sink protocol hides it


def test_docs_are_served_without_a_cdn(proxy: Proxy) -> None:
    page = proxy.http.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = proxy.http.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 100_000
    assert proxy.http.get("/docs/assets/swagger-ui.css").status_code == 200


def test_usage_answers_csv_and_refuses_start_after_end(proxy: Proxy) -> None:
    ask(proxy, "CSV-1")
    proxy.task("CSV-1", 1)
    requests: list[dict[str, Any]] = [
        {"params": {"group_by": "user", "format": "csv"}},
        {"params": {"group_by": "user"}, "headers": {"Accept": "text/csv"}},
    ]
    for request in requests:
        answer = proxy.http.get("/api/v1/usage", **request)
        assert answer.headers["content-type"].startswith("text/csv")
        lines = answer.text.splitlines()
        assert lines[0].startswith(
            "user,requests,errors,unpriced_requests,unpriced_tokens,tokens.input,"
        )
        assert lines[1].startswith("alice,1,0,0,0,11,")
        assert lines[2].startswith("(total),1,")
    params = {"start": "2026-11-02T00:00:00", "end": "2026-11-01T00:00:00"}
    for route in (
        "/api/v1/usage",
        "/api/v1/reports/blended",
        "/api/v1/tasks",
        "/api/v1/reports/roi",
    ):
        answer = proxy.http.get(route, params=params)
        assert answer.status_code == 400, route
        assert "is after end" in answer.json()["detail"]


def test_cli_glitches_seen_in_the_first_hour(
    make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = make_proxy()
    ask(proxy, "GL-1")
    proxy.task("GL-1", 1)
    env = {"TOKENMETER_DATABASE_URL": proxy.app.parts.settings.database_url}
    done = cli("task", "set", "GL-1", "--hours", "24", "--rate", "120", cwd=tmp_path, env=env)
    assert done.stdout == "task GL-1: value $2880\n", done.stderr
    done = cli("task", "set", "GL-1", "--title", "Billing v2", cwd=tmp_path, env=env)
    assert done.stdout == "task GL-1: value $2880\n", done.stderr  # was $2880.000000…
    done = cli("task", "set", "GL-1", "--clear", "hours", cwd=tmp_path, env=env)
    assert done.stdout == "task GL-1: value unknown\n", done.stderr
    done = cli("task", "set", "GL-1", cwd=tmp_path, env=env)  # exited 0 doing nothing
    assert done.returncode == 2
    assert "give at least one of --title, --hours" in done.stderr
    done = cli("report", "roi", cwd=tmp_path, env=env)
    assert "None" not in done.stdout  # was 'Nonex' with no valued task
    assert done.stdout.splitlines()[-1].split() == ["total", "0.000000", "0", "-"]
    done = cli("report", "people", cwd=tmp_path, env=env)
    assert all(line == "" or line.strip() for line in done.stdout.splitlines())
    done = cli("prices", "show", "gpt-5", cwd=tmp_path, env=env)  # said: no price for anthropic
    assert done.returncode == 0
    assert done.stdout.startswith("openai gpt-5 on ")


def test_db_upgrade_says_what_it_did(tmp_path: Path) -> None:
    env = {"TOKENMETER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/new.db"}
    first = cli("db", "upgrade", cwd=tmp_path, env=env).stdout
    assert "upgraded from (empty) to " in first  # said 'already at the latest revision'
    again = cli("db", "upgrade", cwd=tmp_path, env=env).stdout
    assert "was already at the latest revision" in again


def test_a_closed_pipe_ends_the_cli_quietly(tmp_path: Path) -> None:
    """``tokenmeter config | head -1``: the reader goes away; no error, no traceback."""
    child = subprocess.Popen(  # noqa: S603 (our own console script)
        [str(TOKENMETER), "config"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.close()  # before the CLI has printed anything: its first write meets EPIPE
    _, stderr = child.communicate(timeout=60)
    assert stderr.decode() == ""
    assert child.returncode == 141
