"""The dashboard over HTTP: access (loopback, login, viewer), figures equal to the API's, CSV,
the task value form and its CSRF checks, and provider paths still forwarded."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anthropic
import httpx
from anthropic.types.message_create_params import MessageCreateParamsBase

from tests.conftest import Proxy

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
BODY: MessageCreateParamsBase = {
    "model": "claude-opus-4-8",
    "max_tokens": 9,
    "messages": [{"role": "user", "content": "hi"}],
}


def send(
    proxy: Proxy, task: str, user: str, team: str, headers: dict[str, str] | None = None
) -> None:
    """One request through the real SDK, attributed to ``user``/``team``/``task``."""
    extra = {"x-tokenmeter-task": task, "x-tokenmeter-user": user, "x-tokenmeter-team": team}
    with anthropic.Anthropic(
        base_url=proxy.url, api_key="sk-ant-test-123", max_retries=0, default_headers=headers
    ) as claude:
        claude.messages.create(**BODY, extra_headers=extra)


def seed(proxy: Proxy, headers: dict[str, str] | None = None) -> None:
    for task, user, team in [("t-1", "ada", "core"), ("t-1", "ada", "core"), ("t-2", "bob", "web")]:
        send(proxy, task, user, team, headers)
    proxy.task("t-1", 2)
    proxy.task("t-2", 1)


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}" data-exact="([^"]*)"', html)
    assert found, f"no figure {name}"
    return found.group(1)


def thirty_days() -> str:
    return (datetime.now(UTC).date() - timedelta(days=29)).isoformat() + "T00:00:00+00:00"


def test_overview_shows_the_api_figures_and_downloads_them(
    make_proxy: Callable[..., Proxy], db_url: str
) -> None:
    proxy = make_proxy(database_url=db_url)  # on SQLite and PostgreSQL
    seed(proxy)
    page = proxy.http.get("/")
    assert page.status_code == 200, page.text
    api = proxy.http.get("/api/v1/usage", params={"group_by": "day", "start": thirty_days()})
    total = api.json()["total"]
    for name in ("cost_usd", "blended_usd_per_mtok", "sticker_usd_per_mtok", "cache_savings_usd"):
        assert figure(page.text, name) == total[name]
    assert figure(page.text, "total_tokens") == str(total["total_tokens"])
    assert figure(page.text, "unpriced_requests") == "0"
    download = proxy.http.get("/", params={"period": "30d", "format": "csv"})
    assert download.headers["content-disposition"] == 'attachment; filename="overview.csv"'
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert rows[-1]["day"] == "(total)"
    assert rows[-1]["cost_usd"] == total["cost_usd"]
    by_user = proxy.http.get("/", params={"user": "bob"})
    bob = proxy.http.get("/api/v1/usage", params={"user": "bob", "start": thirty_days()})
    assert figure(by_user.text, "cost_usd") == bob.json()["total"]["cost_usd"]


def test_every_page_answers_and_provider_paths_are_still_forwarded(proxy: Proxy) -> None:
    seed(proxy)
    assert proxy.http.get("/web/login").headers["location"] == "/"  # no token: nothing to log in
    for path in ("/web/tasks", "/web/tasks/t-1", "/web/people", "/web/models", "/web/budgets"):
        answer = proxy.http.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert "content-security-policy" in answer.headers
    assert proxy.http.get("/web/static/chart.umd.min.js").status_code == 200
    assert proxy.http.get("/web/tasks/nope").status_code == 404
    assert proxy.http.get("/", params={"period": "fortnight"}).status_code == 400
    assert proxy.task("t-1", 2)["requests"] == 2  # /v1/messages reached the upstream


def test_tasks_page_top_repositories_are_the_api_usage_by_repo(
    make_proxy: Callable[..., Proxy], db_url: str
) -> None:
    proxy = make_proxy(database_url=db_url)  # on SQLite and PostgreSQL
    for task, user, team, session in [
        ("t-1", "ada", "core", "s-api"),
        ("t-1", "ada", "core", "s-api"),
        ("t-2", "bob", "web", "s-web"),
        ("t-3", "bob", "web", None),  # no session: unattributed
    ]:
        headers = {"X-Claude-Code-Session-Id": session} if session else None
        send(proxy, task, user, team, headers)
    proxy.task("t-3", 1)
    assert "No spend has a repository yet" in proxy.http.get("/web/tasks").text
    for session, name in (("s-api", "api"), ("s-web", "web")):  # context after the events
        context = {"repo_host": "github.com", "repo_owner": "acme", "repo_name": name}
        posted = proxy.http.post(f"/api/v1/sessions/{session}/context", json=context)
        assert posted.status_code == 200, posted.text
    page = proxy.http.get("/web/tasks")
    assert page.status_code == 200, page.text
    shown = re.findall(
        r'<tr data-repo="([^"]+)">.*?<td class="num">([\d,]+)</td><td class="num">([\d,]+)</td>'
        r'\s*<td class="num" data-exact="([^"]*)">.*?data-exact="([^"]*)"',
        page.text,
        re.S,
    )
    api = proxy.http.get("/api/v1/usage", params={"group_by": "repo", "start": thirty_days()})
    rows = api.json()["rows"]
    spend = Decimal(api.json()["total"]["cost_usd"])
    expected = [
        (
            r["repo"],
            f"{r['requests']:,}",
            f"{r['total_tokens']:,}",
            r["cost_usd"],
            str((Decimal(r["cost_usd"]) / spend).quantize(Decimal("0.000001"))),
        )
        for r in rows
    ]
    assert shown == expected
    assert [r[0] for r in shown] == ["github.com/acme/api", "github.com/acme/web", "unattributed"]
    download = proxy.http.get("/web/tasks", params={"format": "csv", "table": "repos"})
    listed = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["repo"], r["cost_usd"]) for r in listed] == [
        (r["repo"], r["cost_usd"]) for r in rows
    ]


def test_an_empty_store_says_what_to_do(proxy: Proxy) -> None:
    page = proxy.http.get("/")
    assert "No traffic in this period yet" in page.text
    assert "ANTHROPIC_BASE_URL=http://" in page.text
    assert "tokenmeter budget set --team" in proxy.http.get("/web/budgets").text


def test_budgets_page_and_csv_are_the_api_budgets(proxy: Proxy) -> None:
    seed(proxy)
    for scope, name in (("team", "core"), ("user", "bob"), ("org", None)):
        budget = {"scope": scope, "name": name, "period": "month", "usd": "0.0001"}
        assert proxy.http.put("/api/v1/budgets", json=budget).status_code == 200
    page = proxy.http.get("/web/budgets")
    assert page.status_code == 200, page.text
    rows = proxy.http.get("/api/v1/budgets").json()["budgets"]
    over = sum(1 for row in rows if Decimal(row["spent_usd"]) >= Decimal(row["limit_usd"]))
    assert figure(page.text, "budgets_over") == str(over) == "3"
    download = proxy.http.get("/web/budgets", params={"format": "csv"})
    listed = list(csv.DictReader(io.StringIO(download.text)))
    by_key = {(r["scope"], r["name"]): r for r in listed}
    for row in rows:
        shown = by_key[(row["scope"], row["name"] or "")]
        assert (shown["spent_usd"], shown["percent"]) == (row["spent_usd"], row["percent"])


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_value_form_sets_a_task_value_from_this_origin_only(proxy: Proxy) -> None:
    seed(proxy)
    page = proxy.http.get("/web/tasks/t-1")
    origin = {"origin": proxy.url}
    form = {
        "csrf": _csrf(page.text),
        "basis": "hours",
        "human_hours": "2",
        "hourly_rate_usd": "150",
    }
    foreign = proxy.http.post("/web/tasks/t-1", data=form, headers={"origin": "http://evil.test"})
    assert foreign.status_code == 403
    forged = proxy.http.post("/web/tasks/t-1", data={**form, "csrf": "x"}, headers=origin)
    assert forged.status_code == 403
    saved = proxy.http.post("/web/tasks/t-1", data=form, headers=origin)
    assert saved.status_code == 303
    assert proxy.task("t-1", 2)["value_usd"] == "300"
    assert figure(proxy.http.get("/web/tasks/t-1").text, "value_usd") == "300"


def test_the_pay_form_sets_a_person_and_refuses_nonsense_and_other_origins(proxy: Proxy) -> None:
    seed(proxy)
    page = proxy.http.get("/web/people", params={"edit": "ada"})
    assert 'name="user" required maxlength="200" value="ada"' in page.text
    origin = {"origin": proxy.url}
    form = {
        "csrf": _csrf(page.text),
        "user": "ada",
        "team": "core",
        "annual_compensation": "180,000",
        "currency": "eur",
        "effective_from": "2026-01-01",
    }
    foreign = proxy.http.post("/web/people", data=form, headers={"origin": "http://evil.test"})
    assert foreign.status_code == 403
    bad = proxy.http.post("/web/people", data={**form, "annual_compensation": "-5"}, headers=origin)
    assert bad.status_code == 400
    assert "must be zero or more" in bad.text
    unknown = proxy.http.post("/web/people", data={**form, "currency": "ZZZ"}, headers=origin)
    assert unknown.status_code == 400
    assert "unknown currency" in unknown.text
    saved = proxy.http.post("/web/people", data=form, headers=origin)
    assert saved.status_code == 303
    assert saved.headers["location"] == "/web/people?saved=ada"
    listed = proxy.http.get("/api/v1/people", params={"history": "true"}).json()["rows"]
    assert listed == [
        {
            "user": "ada",
            "effective_from": "2026-01-01",
            "name": None,
            "team": "core",
            "annual_compensation": "180000",
            "currency": "EUR",
        }
    ]


def test_off_loopback_or_relayed_without_a_token_is_refused(proxy: Proxy) -> None:
    relayed = proxy.http.get("/", headers={"x-forwarded-for": "203.0.113.9"})
    assert relayed.status_code == 403
    assert "TOKENMETER_ADMIN_TOKEN" in relayed.text


def test_login_gives_a_strict_httponly_session_and_viewers_cannot_change(
    make_proxy: Callable[..., Proxy],
) -> None:
    proxy = make_proxy(admin_token=ADMIN, viewer_token=VIEWER)
    proxy.http.headers["authorization"] = f"Bearer {ADMIN}"  # the API's; pages want a session
    seed(proxy)
    anonymous = proxy.http.get("/web/people")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/web/login?next=%2Fweb%2Fpeople"
    origin = {"origin": proxy.url}
    wrong = proxy.http.post("/web/login", data={"token": "nope", "next": "/"}, headers=origin)
    assert wrong.status_code == 401
    with httpx.Client(base_url=proxy.url) as viewer:
        login = viewer.post(
            "/web/login", data={"token": VIEWER, "next": "/web/people"}, headers=origin
        )
        assert login.status_code == 303
        assert login.headers["location"] == "/web/people"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert VIEWER not in login.headers["set-cookie"]
        page = viewer.get("/web/tasks/t-1")
        assert page.status_code == 200
        assert "can see but not change" in page.text
        sent = viewer.post(
            "/web/tasks/t-1", data={"basis": "dollars", "value_usd": "5"}, headers=origin
        )
        assert sent.status_code == 403
        people = viewer.get("/web/people")
        assert "can see but not change people" in people.text
        assert 'method="post" action="/web/people"' not in people.text
        pay = {"user": "zed", "annual_compensation": "1"}
        assert viewer.post("/web/people", data=pay, headers=origin).status_code == 403
    with httpx.Client(base_url=proxy.url) as admin:
        admin.post("/web/login", data={"token": ADMIN, "next": "/"}, headers=origin)
        page = admin.get("/web/tasks/t-1")
        form = {"csrf": _csrf(page.text), "basis": "dollars", "value_usd": "1,200"}
        assert admin.post("/web/tasks/t-1", data=form, headers=origin).status_code == 303
    assert proxy.http.get("/api/v1/tasks/t-1").json()["value_usd"] == "1200"


def test_login_never_redirects_off_site(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(admin_token=ADMIN)
    origin = {"origin": proxy.url}
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test"):
        login = proxy.http.post("/web/login", data={"token": ADMIN, "next": target}, headers=origin)
        assert login.headers["location"] == "/"
