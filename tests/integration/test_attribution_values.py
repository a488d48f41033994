"""Attribution values as sent, or a clear 400 (issue 12, finding 5), and safe wherever they go.

Before the fix a value with ``/``, quotes, a space or a non-ASCII letter, or longer than 128
characters, was silently dropped and the request recorded unattributed. Now any printable value
up to 256 characters is stored exactly as sent, and the rest is refused naming the header,
with nothing forwarded. The stored values then travel to Prometheus labels (escaped by
prometheus_client: checked by scraping), the CSV export (defused as formulas) and the API.
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.servers import ServerThread

USER = 'O\'Brien "OB" al/ice \\ 中文'
TEAM = "R&D, Zoë's (EMEA)"
TASK = 'feat/login: fix "remember me" #42'
FORMULA_USER = '=HYPERLINK("http://evil.example/x","click")'

Fake = tuple[FakeAnthropic, ServerThread]


def ask(proxy: Proxy, headers: dict[str, bytes], path: str = "/v1/messages") -> httpx.Response:
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return httpx.post(
        proxy.url + path,
        json=body,
        headers={b"x-api-key": b"sk-ant-test", **{k.encode(): v for k, v in headers.items()}},
    )


def usage_by(proxy: Proxy, group: str, **params: str) -> httpx.Response:
    return proxy.http.get("/api/v1/usage", params={"group_by": group, **params})


def test_printable_values_are_stored_exactly_as_sent(proxy: Proxy, upstream: Fake) -> None:
    headers = {
        "x-tokenmeter-user": USER.encode(),
        "x-tokenmeter-team": TEAM.encode(),
        "x-tokenmeter-task": TASK.encode(),
    }
    assert ask(proxy, headers).status_code == 200
    task: dict[str, Any] = proxy.task(TASK, 1)
    assert task["requests"] == 1
    assert [row["user"] for row in usage_by(proxy, "user").json()["rows"]] == [USER]
    assert [row["team"] for row in usage_by(proxy, "team").json()["rows"]] == [TEAM]
    sent = upstream[0].requests[0]
    assert not any(name.startswith(b"x-tokenmeter-") for name, _ in sent.headers)


def test_the_real_sdk_sends_slashes_and_quotes_and_they_are_kept(
    proxy: Proxy, claude: anthropic.Anthropic
) -> None:
    claude.messages.create(
        model="claude-opus-4-8",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-tokenmeter-user": "team-a/alice", "x-tokenmeter-task": 'say "hi"'},
    )
    assert proxy.task('say "hi"', 1)["requests"] == 1


def test_path_prefix_values_are_percent_decoded_and_kept(proxy: Proxy) -> None:
    prefix = f"/u/{quote(USER, safe='')}/t/{quote(TASK, safe='')}"
    assert ask(proxy, {}, prefix + "/v1/messages").status_code == 200
    assert proxy.task(TASK, 1)["requests"] == 1
    assert [row["user"] for row in usage_by(proxy, "user").json()["rows"]] == [USER]


@pytest.mark.parametrize(
    ("header", "value", "problem"),
    [
        ("x-tokenmeter-task", b"t" * 257, "257 characters long, more than 256"),
        ("x-tokenmeter-user", b"tab\tinside", "control character U+0009"),
        ("x-tokenmeter-user", "rtl\u202egnp.exe".encode(), "control character U+202E"),
        ("x-tokenmeter-team", b"bad \x9b byte", "control character U+009B"),
    ],
)
def test_a_value_that_cannot_be_stored_as_sent_is_refused_naming_the_header(
    proxy: Proxy, upstream: Fake, header: str, value: bytes, problem: str
) -> None:
    response = ask(proxy, {header: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"tokenmeter: {header}: ")
    assert problem in error["message"]
    assert upstream[0].requests == []
    assert proxy.metric("tokenmeter_requests_refused_total", reason="bad_attribution") == 1


def test_a_bad_path_prefix_value_is_refused(proxy: Proxy, upstream: Fake) -> None:
    response = ask(proxy, {}, f"/t/{'y' * 300}/v1/messages")
    assert response.status_code == 400
    assert "the path prefix /t/{task}" in response.json()["error"]["message"]
    assert upstream[0].requests == []


def test_label_values_survive_a_prometheus_scrape(proxy: Proxy) -> None:
    headers = {"x-tokenmeter-user": USER.encode(), "x-tokenmeter-team": TEAM.encode()}
    assert ask(proxy, headers).status_code == 200
    text = proxy.http.get("/metrics").text
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        if family.name == "tokenmeter_tokens"
        for sample in family.samples
    ]
    assert samples
    assert {(s.labels["user"], s.labels["team"]) for s in samples} == {(USER, TEAM)}


def test_a_formula_is_exported_to_csv_as_text(proxy: Proxy) -> None:
    headers = {"x-tokenmeter-user": FORMULA_USER.encode(), "x-tokenmeter-task": b"csv"}
    assert ask(proxy, headers).status_code == 200
    proxy.task("csv", 1)  # recorded
    params = {"by": "user", "format": "csv"}
    exported = proxy.http.get("/api/v1/reports/blended", params=params).text
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [row["user"] for row in rows] == ["'" + FORMULA_USER, "(total)"]
    assert float(rows[0]["cost_usd"]) > 0  # numbers stay numbers
    assert [row["user"] for row in usage_by(proxy, "user").json()["rows"]] == [FORMULA_USER]
