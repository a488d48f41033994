"""Every dashboard panel and every rule, evaluated by a real Prometheus scraping a real proxy.

Debian's ``/usr/bin/prometheus`` runs on a loopback port with the repo's rules loaded, scraping
the proxy (``proxy`` fixture: tokenmeter in front of the fake Anthropic, ``/metrics`` behind a
metrics token, sent as the shipped ``deploy/prometheus/prometheus.yml`` sends it: from a
credentials file) every second while the real anthropic SDK sends traffic from several people,
teams and models, with errors, a mid-stream error and a model that has no price. Before the
traffic, people and their compensation are registered through the proxy's API (a CSV import and
a PUT), which sets the pay series: team totals and who is in which team, by default never a
person's pay. Then:

* every ``expr`` in ``dashboards/*.json`` and every rule expression must be valid PromQL and
  return at least one series with a real number; alert comparisons are evaluated with ``bool``
  so a quiet alert still proves its selectors match;
* every metric name those expressions mention must exist in the scrape (``or vector(0)`` cannot
  hide a typo), every dashboard variable must list values, every rule must evaluate healthy;
* tokens, dollars and sticker dollars in Prometheus must equal what the proxy recorded in its
  database (GET /api/v1/usage?group_by=model);
* the spend-vs-compensation panels join spend to people on the person, count it in the
  person's people-table team (not the team the traffic was tagged with), and leave out spend of
  people without a compensation record, which "Compensation covered" reports;
* no one's pay reached Prometheus: ``tokenmeter_annual_compensation_usd`` has no series and no
  stored sample equals a person's pay (only team totals; search is one person, see README).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import yaml

from tests.conftest import Proxy
from tests.servers import free_port

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = Path("/usr/bin/prometheus")
RULES = ROOT / "deploy" / "prometheus" / "rules" / "tokenmeter.rules.yml"
SHIPPED_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
METRICS_TOKEN = "prometheus-scrapes-with-this-token"
# Grafana's built-in variables, as Grafana would set them for a 1-hour view of 1 s scrapes.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
METRIC_NAME = re.compile(r"\b(tokenmeter_[a-z0-9_]+|up)\b(?=\s*[{\[)])")
TRAILING_COMPARISON = re.compile(r"\s(==|!=|>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")

# (user, team, model, scenario, stream): one wave of traffic; sent twice so rates are non-zero.
WAVE = [
    ("alice", "platform", "claude-opus-4-8", "text", True),
    ("alice", "platform", "claude-opus-4-8", "tool_use", False),
    ("bob", "platform", "claude-haiku-4-5", "text", False),
    ("carol", "research", "claude-sonnet-4-6", "thinking", True),
    ("dave", "research", "claude-opus-4-8", "web_search", True),
    ("carol", "research", "claude-internal-preview", "text", False),  # no price known
    ("bob", "platform", "claude-haiku-4-5", "error_529", False),
    ("alice", "platform", "claude-opus-4-8", "error_400", False),
    ("dave", "research", "claude-sonnet-4-6", "mid_stream_error", True),
]
# The people table: alice, bob and erin by CSV import, dave by PUT. dave's traffic is tagged
# "research" but his people team is "search"; erin (paid in EUR) has no traffic; carol has
# traffic and no compensation record.
PEOPLE_CSV = """user,team,annual_compensation,currency,effective_from
alice,platform,200000,USD,2026-01-01
bob,platform,150000,USD,2026-01-01
erin,research,100000,EUR,2026-01-01
"""
DAVE = {"team": "search", "annual_compensation": "180000", "currency": "USD"}
USD_PER_EUR = Decimal("1.1")
# (user, people team) -> annual compensation in USD: what the team totals add up from.
PAY = {
    ("alice", "platform"): 200000.0,
    ("bob", "platform"): 150000.0,
    ("dave", "search"): 180000.0,
    ("erin", "research"): 110000.0,
}
TEAM_PAY = {("platform",): 350000.0, ("search",): 180000.0, ("research",): 110000.0}
# Tasks with a value (set before their traffic): alice's and bob's requests are ROI-1, carol's
# ROI-2; dave's have no task, so research's spend is only partly valued.
TASKS = {"alice": "ROI-1", "bob": "ROI-1", "carol": "ROI-2"}
VALUES = {"ROI-1": {"value_usd": "500"}, "ROI-2": {"human_hours": "2", "hourly_rate_usd": "100"}}
PER_YEAR = 365 / 30


class Prometheus:
    """A Prometheus server process and a client for its HTTP API."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at unix time ``at``); raises with Prometheus' error text
        when the expression is bad."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = self.http.get("/api/v1/query", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def label_values(self, label: str, match: str) -> list[str]:
        response = self.http.get(f"/api/v1/label/{label}/values", params={"match[]": match})
        values: list[str] = response.json()["data"]
        return values

    def wait_for(self, expr: str, expected: float, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.value(expr)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} = {got}, expected {expected}\n{self.tail()}")
            time.sleep(0.2)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def _require_prometheus() -> None:
    if PROMETHEUS.exists():
        return
    reason = f"{PROMETHEUS} is missing: apt-get install prometheus (scripts/test does this)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the Prometheus test, but {reason}")
    pytest.skip(reason)


def _rules_every_second(tmp_path: Path) -> Path:
    """The repo's rules with every group evaluated each second (some run every few minutes)."""
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        group["interval"] = "1s"
    path = tmp_path / "tokenmeter.rules.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _config(tmp_path: Path, proxy_url: str) -> Path:
    """The shipped scrape job, pointed at the proxy under test; its token file holds the
    proxy's metrics token (the container writes it from TOKENMETER_METRICS_TOKEN)."""
    (shipped,) = yaml.safe_load(SHIPPED_CONFIG.read_text())["scrape_configs"]
    token_file = tmp_path / "metrics-token"
    token_file.write_text(METRICS_TOKEN)
    job = shipped | {"static_configs": [{"targets": [proxy_url.removeprefix("http://")]}]}
    job["authorization"] = shipped["authorization"] | {"credentials_file": str(token_file)}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_rules_every_second(tmp_path))],
        "scrape_configs": [job],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def proxy(make_proxy: Callable[..., Proxy]) -> Proxy:
    """The proxy, converting euros at the company's own rate for the pay series."""
    return make_proxy(usd_per_currency={"EUR": USD_PER_EUR}, metrics_token=METRICS_TOKEN)


@pytest.fixture
def prometheus(tmp_path: Path, proxy: Proxy) -> Iterator[Prometheus]:
    _require_prometheus()
    port = free_port()
    log = tmp_path / "prometheus.log"
    command = [
        str(PROMETHEUS),
        f"--config.file={_config(tmp_path, proxy.url)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(server, process)
        yield server
    finally:
        server.http.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Prometheus, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}\n{server.tail()}")
        try:
            if server.http.get("/-/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"prometheus did not become ready\n{server.tail()}")


def _send(claude: anthropic.Anthropic, request: tuple[str, str, str, str, bool]) -> None:
    user, team, model, scenario, stream = request
    headers = {"x-tokenmeter-user": user, "x-tokenmeter-team": team, "x-fake-scenario": scenario}
    if user in TASKS:
        headers["x-tokenmeter-task"] = TASKS[user]
    messages: Any = [{"role": "user", "content": "say hi"}]
    try:
        if stream:
            with claude.messages.stream(
                model=model, max_tokens=64, messages=messages, extra_headers=headers
            ) as events:
                events.until_done()
        else:
            claude.messages.create(
                model=model, max_tokens=64, messages=messages, extra_headers=headers
            )
    except anthropic.APIError:
        assert scenario.startswith("error_") or scenario == "mid_stream_error", scenario


def _register_people(proxy: Proxy) -> None:
    """Compensation through the API, as finance would enter it; each write sets the gauge."""
    headers = {"content-type": "text/csv"}
    response = proxy.http.post("/api/v1/people/import", content=PEOPLE_CSV, headers=headers)
    assert response.json() == {"imported": 3}, response.text
    response = proxy.http.put("/api/v1/people/dave", json=DAVE | {"effective_from": "2026-01-01"})
    assert response.status_code == 200, response.text


def _register_values(proxy: Proxy) -> None:
    """What the tasks are worth, entered before their first request."""
    for task, value in VALUES.items():
        response = proxy.http.patch(f"/api/v1/tasks/{task}", json=value)
        assert response.status_code == 200, response.text


def _set_budget(proxy: Proxy) -> None:
    """A soft monthly org budget the traffic passes at once: the Budgets row and its alert."""
    budget = {"scope": "org", "period": "month", "usd": "0.000001", "soft": True}
    response = proxy.http.put("/api/v1/budgets", json=budget)
    assert response.status_code == 200, response.text


def _send_traffic(proxy: Proxy, prometheus: Prometheus) -> int:
    """Two waves a few scrapes apart, so every counter has a sample before and after a rise.
    Each wave has one seat request too (a claude.ai login: paid $0, its list price apart)."""
    sent = 0
    seat = anthropic.Anthropic(
        base_url=proxy.url,
        auth_token="sk-ant-oat01-prometheus-test",
        default_headers={"anthropic-beta": "oauth-2025-04-20"},
        max_retries=0,
    )
    with (
        seat,
        anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0) as claude,
    ):
        for wave in range(2):
            for request in WAVE:
                _send(claude, request)
                sent += 1
            _send(seat, ("alice", "platform", "claude-opus-4-8", "text", False))
            sent += 1
            prometheus.wait_for("sum(tokenmeter_requests_total)", sent)
            if wave == 0:
                time.sleep(2.5)  # let a few scrapes see wave 1 alone
    return sent


def _recorded(proxy: Proxy, requests: int) -> dict[str, Any]:
    """GET /api/v1/usage?group_by=model once the recorder has written every exchange."""
    deadline = time.monotonic() + 15
    while True:
        data: dict[str, Any] = proxy.http.get("/api/v1/usage", params={"group_by": "model"}).json()
        if data["total"]["requests"] >= requests or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


# ---------------------------------------------------------------- expressions under test


def dashboard_exprs() -> list[tuple[str, str, set[str]]]:
    """(where, expr, template variable names) for every target of every dashboard."""
    found = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        names = {v["name"] for v in board["templating"]["list"]}
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                where = f"{path.name}: {panel['title']!r} {target['refId']}"
                found.append((where, target["expr"], names))
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_variables() -> list[tuple[str, str, str]]:
    """(where, label, metric or series selector) for every ``label_values(.., label)``."""
    found = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
                assert match, variable["definition"]
                metric, label = match.groups()
                found.append((f"{path.name}: ${variable['name']}", label, metric))
    return found


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def grafana_substitute(expr: str, names: set[str]) -> str:
    """Grafana's interpolation for an 'All' selection: builtins by duration, variables by .*."""
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(f"${name}", value).replace(f"${{{name}}}", value)
    for name in names:
        expr = re.sub(rf"\$\{{{name}\}}|\${name}\b", ".*", expr)
    return expr


def probe_of_alert(expr: str) -> str:
    """The alert with its final comparison made ``bool``: a series whether it fires or not."""
    return TRAILING_COMPARISON.sub(r" \1 bool \2", expr.strip())


def check(prometheus: Prometheus, where: str, expr: str) -> str | None:
    """None when ``expr`` is valid and returns a series with a number, else what is wrong."""
    if "$" in expr:
        return f"{where}: an unsubstituted variable in {expr}"
    try:
        result = prometheus.query(expr)
    except ValueError as exc:
        return f"{where}: invalid: {exc}: {expr}"
    if not result:
        return f"{where}: returns no series: {expr}"
    if not any(math.isfinite(float(sample["value"][1])) for sample in result):
        return f"{where}: returns only NaN/Inf: {expr}"
    return None


def exprs_under_test() -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard target, recording rule and alert (as a bool probe)."""
    found = [(w, grafana_substitute(e, names)) for w, e, names in dashboard_exprs()]
    for rule in rules():
        if "record" in rule:
            found.append((f"rule {rule['record']}", rule["expr"]))
            found.append((f"rule {rule['record']} (as recorded)", rule["record"]))
        else:
            found.append((f"alert {rule['alert']}", probe_of_alert(rule["expr"])))
    return found


# ---------------------------------------------------------------- the test


def test_every_dashboard_panel_and_rule_answers_from_a_real_prometheus(
    proxy: Proxy, prometheus: Prometheus
) -> None:
    _register_people(proxy)
    _register_values(proxy)
    _set_budget(proxy)
    sent = _send_traffic(proxy, prometheus)
    recorded = _recorded(proxy, sent)
    assert recorded["total"]["requests"] == sent
    proxy.app.parts.metrics.roi.expire()  # the next scrape reads the tasks' value and cost
    _wait_rules_evaluated(prometheus)

    problems = [p for where, e in exprs_under_test() if (p := check(prometheus, where, e))]
    problems += _missing_metric_names(prometheus)
    problems += _empty_variables(prometheus)
    problems += _unhealthy_rules(prometheus)
    assert not problems, "\n".join(problems)
    assert len(exprs_under_test()) > 80  # every panel of the three dashboards was reached

    _assert_same_numbers(prometheus, recorded)
    _assert_spend_over_pay(prometheus)
    _assert_no_personal_pay(prometheus)
    _assert_roi_is_the_apis(proxy, prometheus)


def _wait_rules_evaluated(prometheus: Prometheus) -> None:
    """Until every recording rule's latest evaluation has seen the second wave (finite values)."""
    records = [rule["record"] for rule in rules() if "record" in rule]
    deadline = time.monotonic() + 15
    while any(check(prometheus, name, name) for name in records):
        if time.monotonic() > deadline:
            break  # check() then names the recording rules that never produced a number
        time.sleep(0.2)


def _missing_metric_names(prometheus: Prometheus) -> list[str]:
    exported = set(prometheus.label_values("__name__", '{job="tokenmeter"}'))
    used = {name for _, expr in exprs_under_test() for name in METRIC_NAME.findall(expr)}
    return [f"metric {name} is not exported by the proxy" for name in sorted(used - exported)]


def _empty_variables(prometheus: Prometheus) -> list[str]:
    return [
        f"{where}: label_values({metric}, {label}) lists nothing"
        for where, label, metric in dashboard_variables()
        if not [v for v in prometheus.label_values(label, metric) if v]
    ]


def _unhealthy_rules(prometheus: Prometheus) -> list[str]:
    groups = prometheus.http.get("/api/v1/rules").json()["data"]["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    problems = [
        f"rule {rule['name']}: {rule['health']} {rule.get('lastError', '')}"
        for rule in loaded
        if rule["health"] != "ok"
    ]
    if len(loaded) != len(rules()):
        problems.append(f"prometheus loaded {len(loaded)} rules, the file has {len(rules())}")
    return problems


def _assert_same_numbers(prometheus: Prometheus, recorded: dict[str, Any]) -> None:
    """Tokens exactly, dollars to a billionth: Prometheus counters = the database's events."""
    # The API names exchanges without a model "(none)"; metrics label them "unknown".
    rows = {row["model"].replace("(none)", "unknown"): row for row in recorded["rows"]}
    tokens = _by(prometheus, "sum by (model, kind) (tokenmeter_tokens_total)", "model", "kind")
    cost = _by(prometheus, "sum by (model) (tokenmeter_cost_usd_total)", "model")
    sticker = _by(prometheus, "sum by (model) (tokenmeter_sticker_cost_usd_total)", "model")
    unpriced = _by(prometheus, "sum by (model) (tokenmeter_unpriced_requests_total)", "model")
    for model, row in rows.items():
        for kind, count in row["tokens"].items():
            assert tokens.get((model, kind), 0) == count, (model, kind)
        assert unpriced.get((model,), 0) == row["unpriced_requests"], model
        if row["unpriced_requests"] or not row["total_tokens"]:
            assert (model,) not in cost, model  # an unknown cost is never counted as $0
            continue
        assert abs(Decimal(str(cost[(model,)])) - Decimal(row["cost_usd"])) < Decimal("1e-9")
        assert abs(Decimal(str(sticker[(model,)])) - Decimal(row["sticker_usd"])) < Decimal("1e-9")
    total = recorded["total"]
    assert prometheus.value("sum(tokenmeter_tokens_total)") == total["total_tokens"]
    assert abs(prometheus.value("sum(tokenmeter_cost_usd_total)") - float(total["cost_usd"])) < 1e-9
    assert prometheus.value("sum(tokenmeter_requests_total)") == total["requests"]
    models_with_tokens = {model for model, row in rows.items() if row["total_tokens"]}
    assert {model for model, _ in tokens} == models_with_tokens


def _assert_spend_over_pay(prometheus: Prometheus) -> None:
    """The People and ROI panels' ratios, from the same instant's per-person 30-day spend."""
    at = time.time()  # one instant for every query: increase() extrapolation moves with time
    time.sleep(1.5)  # so every scrape that started before it is stored
    team_pay = "tokenmeter_team_annual_compensation_usd"
    assert _by(prometheus, team_pay, "team") == TEAM_PAY
    people = _by(prometheus, "tokenmeter_person_team_info", "user", "team")
    assert people == dict.fromkeys(PAY, 1.0)
    spend = {
        user: value
        for (user,), value in _by(
            prometheus, "sum by (user) (increase(tokenmeter_cost_usd_total[30d]))", "user", at=at
        ).items()
    }
    assert spend["carol"] > 0  # spend without a compensation record: not in any ratio
    assert "erin" not in spend  # a compensation record without spend
    panel = _people_panel(prometheus, at)
    team = panel("Spend ÷ compensation per team", "team")
    platform = (spend["alice"] + spend["bob"]) * PER_YEAR / 350000
    assert team.keys() == {("platform",), ("search",), ("research",)}
    assert math.isclose(team[("platform",)], platform)
    assert math.isclose(team[("search",)], spend["dave"] * PER_YEAR / 180000)
    assert team[("research",)] == 0  # carol's research-tagged spend is not erin's team's
    known = spend["alice"] + spend["bob"] + spend["dave"]
    (overall,) = panel("Spend ÷ compensation, overall").values()
    assert math.isclose(overall, known * PER_YEAR / sum(PAY.values()))
    (covered,) = panel("Compensation covered").values()
    assert math.isclose(covered, known / sum(spend.values()))
    assert 0 < covered < 1
    table = panel("Teams: spend vs compensation", "team")
    assert table == team


def _assert_no_personal_pay(prometheus: Prometheus) -> None:
    """Prometheus never received a person's pay: no such series, and no stored pay sample
    equals the pay of a person who shares a team (alone in a team, a total is one person's)."""
    assert prometheus.query("tokenmeter_annual_compensation_usd") == []
    assert prometheus.label_values("__name__", '{__name__=~".*compensation.*"}') == [
        "org:tokenmeter_spend_to_compensation:ratio30d",
        "team:tokenmeter_spend_to_compensation:ratio30d",
        "tokenmeter_team_annual_compensation_usd",
    ]
    stored = prometheus.query("tokenmeter_team_annual_compensation_usd[1h]")
    values = {float(v) for series in stored for _, v in series["values"]}
    assert values == set(TEAM_PAY.values())
    assert not values & {PAY[("alice", "platform")], PAY[("bob", "platform")]}


def _assert_roi_is_the_apis(proxy: Proxy, prometheus: Prometheus) -> None:
    """ROI in Prometheus (the rule and the panel) = ``GET /api/v1/reports/roi``, per task and
    overall; the valued share is below 1 (dave's research spend has no task)."""
    api = proxy.http.get("/api/v1/reports/roi").json()
    rows = {row["task_id"]: row for row in api["rows"]}
    assert sorted(rows) == ["ROI-1", "ROI-2"]
    (rule,) = _by(prometheus, "org:tokenmeter_task_roi:ratio").values()
    assert round(rule, 2) == float(api["total"]["roi"])
    (panel,) = _people_panel(prometheus, time.time())("ROI, overall").values()
    assert panel == rule
    team = _by(prometheus, "team:tokenmeter_task_roi:ratio", "team")
    assert round(team[("platform",)], 2) == float(rows["ROI-1"]["roi"])  # one task, one team
    assert round(team[("research",)], 2) == float(rows["ROI-2"]["roi"])
    share = _by(prometheus, "team:tokenmeter_valued_spend_share:ratio30d", "team")
    assert round(share[("platform",)], 9) == 1  # a float ratio of float counters
    assert 0 < share[("research",)] < 1
    print(f"ROI: Prometheus org:tokenmeter_task_roi:ratio = {rule}; API total roi =", api["total"])


def _people_panel(prometheus: Prometheus, at: float) -> Callable[..., dict[tuple[str, ...], float]]:
    """A reader of the People and ROI panel titled so, by the labels named, at ``at``."""
    exprs = {where: e for where, e, _ in dashboard_exprs() if where.startswith("people-roi")}

    def read(title: str, *labels: str) -> dict[tuple[str, ...], float]:
        expr = exprs[f"people-roi.json: {title!r} A"]
        return _by(prometheus, grafana_substitute(expr, {"team"}), *labels, at=at)

    return read


def _by(
    prometheus: Prometheus, expr: str, *labels: str, at: float | None = None
) -> dict[tuple[str, ...], float]:
    return {
        tuple(sample["metric"].get(label, "") for label in labels): float(sample["value"][1])
        for sample in prometheus.query(expr, at)
    }
