"""The dashboard in a real browser: Playwright driving Debian's Chromium (``/usr/bin/chromium``,
installed by scripts/test; never a browser Playwright downloads).

Traffic goes through the real SDK; each page's figures must equal the REST API's (exact in
``data-exact``, and as the page formats them); filters, the task value form and a CSV download
are clicked through; any console error, page error or failed request fails the test.
Screenshots of every page at 1280×800 and at a phone's 390×844 are written to ``SCREENSHOTS``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest
from playwright import sync_api as playwright_sync

from proxy.cli import main
from proxy.web.format import usd
from tests.conftest import Proxy
from tests.fakes.anthropic_admin import FakeAdmin
from tests.integration.test_reconcile_report import (  # noqa: F401 (admin, database: fixtures)
    EXTRA,
    admin,
    database,
    days,
    record,
)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(
    os.environ.get("TOKENMETER_WEB_SCREENSHOTS", Path(__file__).parents[2] / "build" / "web-shots")
)
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
TRAFFIC = [  # (task, user, team, model)
    ("fix-login-bug", "ada", "core", "claude-opus-4-8"),
    ("fix-login-bug", "ada", "core", "claude-opus-4-8"),
    ("fix-login-bug", "ada", "core", "claude-sonnet-4-6"),
    ("new-report", "bob", "web", "claude-sonnet-4-6"),
    ("spike", "zed", "web", "claude-haiku-4-5"),
]
PAY = {"ada": ("core", "200000"), "bob": ("web", "150000")}  # zed has no pay record
# Each user's Claude Code session and the repository it reports; zed's has none: unattributed.
REPOS = {"ada": "api", "bob": "web"}


class Watch:
    """Everything that went wrong in a page: console errors, page errors, failed requests."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and "/web/static/" in response.url:
            self.problems.append(f"asset {response.status}: {response.url}")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"no {CHROMIUM}: scripts/test installs Debian's chromium (as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def seed(proxy: Proxy) -> None:
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test-123", max_retries=0) as c:
        for task, user, team, model in TRAFFIC:
            headers = {
                "x-tokenmeter-task": task,
                "x-tokenmeter-user": user,
                "x-tokenmeter-team": team,
                "X-Claude-Code-Session-Id": f"s-{user}",
            }
            c.messages.create(
                model=model,
                max_tokens=9,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers=headers,
            )
    for user, (team, pay) in PAY.items():
        body = {"team": team, "annual_compensation": pay, "effective_from": "2026-01-01"}
        assert proxy.http.put(f"/api/v1/people/{user}", json=body).status_code == 200
    for task in ("fix-login-bug", "new-report", "spike"):
        proxy.task(task, sum(1 for t in TRAFFIC if t[0] == task))
    for user, name in REPOS.items():  # work context as Claude Code's hooks send it
        context = {"repo_host": "github.com", "repo_owner": "acme", "repo_name": name}
        posted = proxy.http.post(f"/api/v1/sessions/s-{user}/context", json=context)
        assert posted.status_code == 200, posted.text


def api(proxy: Proxy, path: str, **params: str) -> Any:
    answer = proxy.http.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def exact(page: Any, name: str) -> str:
    return str(page.locator(f'[data-figure="{name}"]').first.get_attribute("data-exact"))


def shown(page: Any, name: str) -> str:
    return str(page.locator(f'[data-figure="{name}"] .value').first.inner_text())


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)  # the charts resize
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow} px wider than a {width} px screen"
    page.set_viewport_size({"width": 1280, "height": 800})


def month_start() -> str:
    return (datetime.now(UTC).date() - timedelta(days=29)).isoformat() + "T00:00:00+00:00"


def test_every_page_in_chromium_matches_the_api(proxy: Proxy, browser: Any, tmp_path: Path) -> None:
    seed(proxy)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    watch = Watch(page)

    # Overview: the 30-day figures equal /api/v1/usage's for the same window.
    page.goto(f"{proxy.url}/")
    total = api(proxy, "/api/v1/usage", group_by="day", start=month_start())["total"]
    for name in ("cost_usd", "cache_savings_usd", "blended_usd_per_mtok", "unpriced_requests"):
        assert exact(page, name) == str(total[name]), name
    assert shown(page, "cost_usd") == usd(total["cost_usd"])
    assert shown(page, "total_tokens") == f"{total['total_tokens']:,}"
    assert page.locator("canvas[data-chart]").count() == 3
    shoot(page, "overview")

    # A filter picked from its menu lands in the URL and narrows every figure.
    page.select_option("select[name=team]", "web")
    page.wait_for_url("**team=web**")
    web = api(proxy, "/api/v1/usage", group_by="day", start=month_start(), team="web")["total"]
    assert exact(page, "cost_usd") == web["cost_usd"]
    assert exact(page, "total_tokens") == str(web["total_tokens"])

    # The CSV download holds the table the page shows, its total equal to the API's.
    with page.expect_download() as caught:
        page.click("text=Download CSV")
    saved = tmp_path / "overview.csv"
    caught.value.save_as(saved)
    rows = list(csv.DictReader(saved.read_text().splitlines()))
    assert rows[-1]["day"] == "(total)"
    assert rows[-1]["cost_usd"] == web["cost_usd"]

    # Tasks: the costliest first, as the API sorts them; then one task's page and value form.
    page.goto(f"{proxy.url}/web/tasks")
    listed = api(proxy, "/api/v1/tasks", start=month_start(), sort="cost")["rows"]
    shown_ids = page.locator("#costliest tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.task)"
    )
    assert shown_ids == [row["task_id"] for row in listed]
    # Top repositories: usage by repo, unattributed last, each row's spend the API's.
    by_repo = api(proxy, "/api/v1/usage", group_by="repo", start=month_start())["rows"]
    repos = page.locator("#repos tbody tr").evaluate_all("rows => rows.map(r => r.dataset.repo)")
    assert repos == [row["repo"] for row in by_repo]
    assert repos == ["github.com/acme/api", "github.com/acme/web", "unattributed"]
    for row in by_repo:
        spend = page.locator(f'#repos tr[data-repo="{row["repo"]}"] td[data-exact]').first
        assert spend.get_attribute("data-exact") == row["cost_usd"]
        assert spend.inner_text() == usd(row["cost_usd"])
    shoot(page, "tasks")
    page.click("#costliest >> text=fix-login-bug")
    page.wait_for_url("**/web/tasks/fix-login-bug")
    task = api(proxy, "/api/v1/tasks/fix-login-bug")
    assert exact(page, "cost_usd") == task["cost_usd"]
    page.check("input[name=basis][value=hours]")
    page.fill("input[name=human_hours]", "2")
    page.fill("input[name=hourly_rate_usd]", "150")
    page.click("text=Save value")
    page.wait_for_url("**saved=1")
    task = api(proxy, "/api/v1/tasks/fix-login-bug")
    assert task["value_usd"] == "300"
    assert exact(page, "roi") == task["roi"]
    assert page.locator("canvas[data-chart=timeline]").count() == 1
    shoot(page, "task")
    page.goto(f"{proxy.url}/web/tasks")
    assert page.locator("#best-roi tbody tr").count() == 1
    shoot(page, "tasks-with-roi")

    # People over a custom 30-day period: the compensation and distribution reports' figures.
    first = datetime.now(UTC).date() - timedelta(days=29)
    last = datetime.now(UTC).date()
    page.goto(f"{proxy.url}/web/people?period=custom&start={first}&end={last}")
    end = (last + timedelta(days=1)).isoformat() + "T00:00:00+00:00"
    pay = api(proxy, "/api/v1/reports/compensation", days="30", end=end)
    spread = api(proxy, "/api/v1/reports/distribution", days="30", end=end, metric="cost_usd")
    assert exact(page, "org_spend_usd") == pay["org"]["spend_usd"]
    assert exact(page, "org_spend_to_compensation") == pay["org"]["spend_to_compensation"]
    assert exact(page, "gini") == spread["gini"]
    assert "no pay record" in page.locator('#people tr[data-user="zed"]').inner_text()
    shoot(page, "people")

    # The pay form: "edit" on zed's row fills the user; saving makes the record the API lists.
    page.click('#people tr[data-user="zed"] >> text=edit')
    page.wait_for_url("**edit=zed**")
    assert page.input_value("input[name=user]") == "zed"
    page.fill("input[name=team]", "web")
    page.fill("input[name=annual_compensation]", "120000")
    page.click("text=Save person")
    page.wait_for_url("**saved=zed")
    assert page.locator("#pay .ok").inner_text() == "Saved zed's record."
    people = api(proxy, "/api/v1/people")["rows"]
    assert {"user": "zed", "team": "web", "annual_compensation": "120000"}.items() <= next(
        p for p in people if p["user"] == "zed"
    ).items()
    assert "no pay record" not in page.locator('#people tr[data-user="zed"]').inner_text()

    # Models and prices: each model's blended $/MTok is the blended report's.
    page.goto(f"{proxy.url}/web/models")
    blended = api(proxy, "/api/v1/reports/blended", by="model", start=month_start())["rows"]
    for row in blended:
        cell = page.locator(f'#models tr[data-model="{row["model"]}"] td[data-exact]').nth(1)
        assert cell.get_attribute("data-exact") == row["blended_usd_per_mtok"]
    assert page.locator("details table.rates").count() >= 1
    shoot(page, "models")

    # Budgets: each budget's period-to-date spend is the API's, the spent one marked.
    for budget in (
        {"scope": "team", "name": "core", "period": "month", "usd": "2000"},
        {"scope": "user", "name": "bob", "period": "day", "usd": "0.0001"},
    ):
        assert proxy.http.put("/api/v1/budgets", json=budget).status_code == 200
    page.goto(f"{proxy.url}/web/budgets")
    for row in api(proxy, "/api/v1/budgets")["budgets"]:
        cells = page.locator(
            f'#budgets tr[data-budget="{row["scope"]}:{row["name"]}:{row["period"]}"]'
        )
        assert (
            cells.locator("td[data-exact]").nth(1).get_attribute("data-exact") == row["spent_usd"]
        )
    assert exact(page, "budgets_over") == "1"
    assert "refusing" in page.locator('#budgets tr[data-budget="user:bob:day"]').inner_text()
    shoot(page, "budgets")

    assert watch.problems == []
    context.close()


def test_login_page_and_an_empty_overview_in_chromium(make_proxy: Any, browser: Any) -> None:
    token = "admin-token-0123456789abcdef"
    proxy = make_proxy(admin_token=token)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    watch = Watch(page)
    page.goto(f"{proxy.url}/")
    page.wait_for_url("**/web/login**")
    shoot(page, "login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{proxy.url}/")
    assert "No traffic in this period yet" in page.inner_text("main")
    shoot(page, "overview-empty")
    assert watch.problems == []


def test_the_reconcile_page_in_chromium(
    make_proxy: Any,
    admin: FakeAdmin,  # noqa: F811 (the fixture imported above)
    database: str,  # noqa: F811
    browser: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three days billed by the fake Admin API, one revised upwards: one row is proxy low."""
    proxy = make_proxy(database_url=database)
    admin.usage[days()[1]][0]["uncached_input_tokens"] += EXTRA
    with ThreadPoolExecutor(1) as aside:  # Playwright's loop runs in this thread
        aside.submit(record, database).result()
        assert aside.submit(main, ["reconcile", "fetch", "--since", "5d"]).result() == 0
    capsys.readouterr()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    watch = Watch(page)
    page.goto(f"{proxy.url}/web/reconcile?period=7d")
    assert page.locator('#reconcile tr[data-verdict="proxy_low"]').count() == 1
    assert page.locator('#reconcile tr[data-verdict="match"]').count() == 5
    assert exact(page, "mismatches") == "1"
    shoot(page, "reconcile")
    assert watch.problems == []
    page.close()
