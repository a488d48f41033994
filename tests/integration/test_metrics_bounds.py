"""Client-chosen label values are bounded on /metrics and kept whole in the database.

``x-tokenmeter-user`` and ``-team`` are whatever a client sends; 10,000 distinct users once
made 140,093 series and a 19 MB scrape. Past ``TOKENMETER_METRICS_MAX_USERS`` (``_TEAMS``)
new names are counted as ``user="other"`` (``team="other"``); the API still lists everyone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import anthropic

from tests.conftest import Proxy

USERS = 12
TEAMS = 6
SAMPLE = re.compile(r"^(tokenmeter_[a-z_]+)\{([^}]*)\} (\S+)$", re.M)


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for metric, labels, value in SAMPLE.findall(text):
        if metric == name:
            found.append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
    return found


def test_users_past_the_bound_are_other_on_metrics_and_named_in_the_api(
    make_proxy: Callable[..., Proxy],
) -> None:
    proxy = make_proxy(metrics_max_users=5, metrics_max_teams=3)
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0) as claude:
        for n in range(USERS):
            headers = {
                "x-tokenmeter-user": f"user-{n:02}",
                "x-tokenmeter-team": f"team-{n % TEAMS}",
            }
            claude.messages.create(
                model="claude-haiku-4-5",
                max_tokens=8,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers=headers,
            )
    tokens = _samples(proxy.http.get("/metrics").text, "tokenmeter_tokens_total")
    pairs = {(labels["user"], labels["team"]) for labels, _ in tokens}
    kinds = {labels["kind"] for labels, _ in tokens}
    # First come, first named: user-00..04 and team-0..2; everyone and every team after is other.
    assert pairs == {
        ("user-00", "team-0"),
        ("user-01", "team-1"),
        ("user-02", "team-2"),
        ("user-03", "other"),
        ("user-04", "other"),
        ("other", "team-0"),
        ("other", "team-1"),
        ("other", "team-2"),
        ("other", "other"),
    }
    assert len(tokens) == len(pairs) * len(kinds)
    rows = _usage_by_user(proxy)
    assert sorted(rows) == [f"user-{n:02}" for n in range(USERS)]
    assert sum(value for _, value in tokens) == sum(r["total_tokens"] for r in rows.values())


def _usage_by_user(proxy: Proxy) -> dict[str, dict[str, int]]:
    deadline = time.monotonic() + 10
    while True:
        data = proxy.http.get("/api/v1/usage", params={"group_by": "user"}).json()
        if data["total"]["requests"] >= USERS or time.monotonic() > deadline:
            return {row["user"]: row for row in data["rows"]}
        time.sleep(0.05)
