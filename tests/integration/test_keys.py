"""Proxy-issued keys end to end: ``tokenmeter keys`` makes them, the real SDKs use them, the fake
upstreams see only the company key, reports bill the key's owner, revocation and expiry answer
401 in the provider's format, and no secret lands in the database, the spool or the logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import openai
import pytest

from proxy import apikeys
from proxy.cli import main
from proxy.store.engine import make_engine
from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.servers import ServerThread

COMPANY_ANTHROPIC = "sk-ant-company-MARKER-a1b2c3"
COMPANY_OPENAI = "sk-proj-company-MARKER-d4e5f6"


@pytest.fixture
def keyed(
    make_proxy: Callable[..., Proxy],
    openai_upstream: tuple[FakeOpenAI, ServerThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Proxy:
    """A proxy with company keys and a fast key cache; the CLI pointed at its database."""
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/tokenmeter.db")
    return make_proxy(
        openai_upstream=openai_upstream[1].url,
        anthropic_api_key=COMPANY_ANTHROPIC,
        openai_api_key=COMPANY_OPENAI,
        key_cache_s=0.1,
    )


def create(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``tokenmeter keys create …``: the key it printed once."""
    capsys.readouterr()
    assert main(["keys", "create", *args]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("tmk_")
    return key


def accepted(proxy: Proxy, key: str, timeout: float = 5.0) -> None:
    """Wait until the proxy's key cache holds ``key`` (its refresher runs every 0.1 s here)."""
    deadline = time.monotonic() + timeout
    while proxy.http.get("/v1/models", headers={"x-api-key": key}).status_code == 401:
        assert time.monotonic() < deadline, "the proxy never accepted the new key"
        time.sleep(0.05)


def refused_with(proxy: Proxy, key: str, words: str, timeout: float = 5.0) -> dict[str, str]:
    """Wait until the proxy answers ``key`` with a 401 whose message holds ``words``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = proxy.http.get("/v1/models", headers={"x-api-key": key})
        if answer.status_code == 401 and words in answer.json()["error"]["message"]:
            error: dict[str, str] = answer.json()["error"]
            return error
        assert time.monotonic() < deadline, f"still {answer.status_code} {answer.text}"
        time.sleep(0.05)


def users(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``tokenmeter usage --by user``: requests per user."""
    capsys.readouterr()
    assert main(["usage", "--by", "user", "--since", "1h"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:-1]
    return {line.split()[0]: line.split()[1] for line in lines}


def users_once_recorded(capsys: pytest.CaptureFixture[str], want: dict[str, str]) -> None:
    """Poll ``usage --by user`` until it shows ``want`` (the recorder writes in batches)."""
    deadline = time.monotonic() + 10
    while (got := users(capsys)) != want:
        assert time.monotonic() < deadline, f"usage --by user: {got}"
        time.sleep(0.1)


def test_a_key_is_billed_to_its_owner_and_only_the_company_key_goes_upstream(
    keyed: Proxy,
    upstream: tuple[FakeAnthropic, ServerThread],
    openai_upstream: tuple[FakeOpenAI, ServerThread],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tokenmeter")
    key = create(capsys, "--user", "alice", "--team", "platform", "--name", "laptop")
    accepted(keyed, key)
    spoof = {"x-tokenmeter-user": "bob", "x-tokenmeter-team": "x", "x-tokenmeter-task": "T-1"}
    with anthropic.Anthropic(
        base_url=keyed.url, api_key=key, max_retries=0, default_headers=spoof
    ) as claude:
        reply = claude.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.usage.output_tokens > 0
    sent = upstream[0].requests[-1]
    assert sent.header("x-api-key") == COMPANY_ANTHROPIC
    assert sent.header("authorization") is None
    assert key not in repr(sent.headers)
    # Claude Code's apiKeyHelper sends the key in both headers
    both = {"x-api-key": key, "authorization": f"Bearer {key}"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}
    assert keyed.http.post("/v1/messages", headers=both, json=body).status_code == 200
    sent = upstream[0].requests[-1]
    assert (sent.header("x-api-key"), sent.header("authorization")) == (COMPANY_ANTHROPIC, None)
    with openai.OpenAI(base_url=f"{keyed.url}/openai/v1", api_key=key, max_retries=0) as gpt:
        gpt.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    got = openai_upstream[0].requests[-1]
    assert got.header("authorization") == f"Bearer {COMPANY_OPENAI}"
    assert key not in repr(got.headers)
    assert keyed.metric("tokenmeter_identity_overrides_total", source="key") == 1
    users_once_recorded(capsys, {"alice": "4"})  # with accepted()'s GET /v1/models
    assert keyed.task("T-1", 1)["requests"] == 1  # the task header still applies
    capsys.readouterr()
    assert main(["usage", "--by", "billing", "--since", "1h"]) == 0
    billed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert billed.get("tokenmeter_key") == "4"  # paid per token with the company's key
    assert "api_key" not in billed
    assert main(["usage", "--by", "key", "--since", "1h"]) == 0
    by_key = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert by_key[key.rsplit("_", 1)[0]].endswith("alice (platform)")  # the id, not the secret
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key[-4:] in listed
    assert "alice" in listed
    assert "active" in listed
    assert key not in listed
    secret = key.rsplit("_", 1)[1]
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for marker in (secret, COMPANY_ANTHROPIC, COMPANY_OPENAI):
        assert marker.encode() not in stored
        assert marker not in caplog.text


def test_revoked_expired_unknown_and_required_keys_get_401(
    keyed: Proxy,
    make_proxy: Callable[..., Proxy],
    upstream: tuple[FakeAnthropic, ServerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = create(capsys, "--user", "carol")
    accepted(keyed, key)
    assert main(["keys", "revoke", key.rsplit("_", 1)[0]]) == 0
    error = refused_with(keyed, key, "was revoked at")
    assert error["type"] == "authentication_error"
    with (
        anthropic.Anthropic(base_url=keyed.url, api_key=key, max_retries=0) as claude,
        pytest.raises(anthropic.AuthenticationError, match="revoked at"),
    ):
        claude.models.list()
    expired = asyncio.run(_expired_key())
    refused_with(keyed, expired, "expired at")
    wrong = key[:-4] + "AAAA" if not key.endswith("AAAA") else key[:-4] + "BBBB"
    refused_with(keyed, wrong, "wrong secret")
    refused_with(keyed, "tmk_000000000000_" + "x" * 32, "unknown")
    before = len(upstream[0].requests)
    strict = make_proxy(require_key=True, anthropic_api_key=COMPANY_ANTHROPIC)
    with (
        anthropic.Anthropic(base_url=strict.url, api_key="sk-ant-own", max_retries=0) as claude,
        pytest.raises(anthropic.AuthenticationError, match="requires a tokenmeter key"),
    ):
        claude.models.list()
    assert len(upstream[0].requests) == before  # nothing was forwarded
    assert strict.metric("tokenmeter_requests_refused_total", reason="key_required") == 1


async def _expired_key() -> str:
    engine = make_engine(f"sqlite+aiosqlite:///{_db_path()}")
    try:
        past = datetime.now(UTC) - timedelta(days=2)
        issued = await apikeys.create_key(
            engine, "dave", expires_in=timedelta(days=1), actor="test", now=past
        )
    finally:
        await engine.dispose()
    return issued.key


def _db_path() -> str:
    import os

    return os.environ["TOKENMETER_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")


def test_rotation_keeps_the_old_secret_for_the_grace_window(
    keyed: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    old = create(capsys, "--user", "erin")
    accepted(keyed, old)
    ident = old.rsplit("_", 1)[0]
    assert main(["keys", "rotate", ident, "--grace", "1h", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    new = rotated["key"]
    assert new.rsplit("_", 1)[0] == ident
    assert new != old
    accepted(keyed, new)
    assert keyed.http.get("/v1/models", headers={"x-api-key": old}).status_code == 200
    assert main(["keys", "rotate", ident, "--grace", "1m"]) == 0
    newest = capsys.readouterr().out.strip()
    accepted(keyed, newest)
    refused_with(keyed, old, "wrong secret")  # two rotations ago: out of the window
    assert keyed.http.get("/v1/models", headers={"x-api-key": new}).status_code == 200
    assert main(["keys", "audit", ident]) == 0
    actions = [line.split()[2] for line in capsys.readouterr().out.splitlines()]
    assert actions == ["create", "rotate", "rotate"]


def test_a_passthrough_key_still_passes_through(
    keyed: Proxy, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    answer = keyed.http.get("/v1/models", headers={"x-api-key": "sk-ant-own-key"})
    assert answer.status_code == 200
    assert upstream[0].requests[-1].header("x-api-key") == "sk-ant-own-key"


@pytest.fixture
def no_company_key(make_proxy: Callable[..., Proxy]) -> Proxy:
    return make_proxy(key_cache_s=0.1)


def test_a_key_without_a_company_key_is_a_500_not_a_leak(
    no_company_key: Proxy,
    upstream: tuple[FakeAnthropic, ServerThread],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/tokenmeter.db")
    key = create(capsys, "--user", "frank")
    deadline = time.monotonic() + 5
    while True:
        answer = no_company_key.http.get("/v1/models", headers={"x-api-key": key})
        if answer.status_code == 500:
            break
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.05)
    assert "TOKENMETER_ANTHROPIC_API_KEY" in answer.json()["error"]["message"]
    assert upstream[0].requests == []


def test_company_key_from_a_file(tmp_path: Path) -> None:
    from proxy.config import Settings

    secret = tmp_path / "anthropic.key"
    secret.write_text(COMPANY_ANTHROPIC + "\n")
    settings = Settings(anthropic_api_key_file=secret)
    assert settings.company_keys() == {"anthropic": COMPANY_ANTHROPIC}
    assert COMPANY_ANTHROPIC not in repr(Settings(anthropic_api_key=COMPANY_ANTHROPIC))


@pytest.mark.postgres
def test_rest_keys_and_revocation_seen_by_a_second_replica(
    make_proxy: Callable[..., Proxy],
    pg_url: str,
    tmp_path: Path,
    upstream: tuple[FakeAnthropic, ServerThread],
) -> None:
    cache_s = 0.5
    common = {"database_url": pg_url, "anthropic_api_key": COMPANY_ANTHROPIC}
    one = make_proxy(key_cache_s=cache_s, spool_dir=tmp_path / "spool1", **common)
    two = make_proxy(key_cache_s=cache_s, spool_dir=tmp_path / "spool2", **common)
    made = one.http.post("/api/v1/keys", json={"user": "gina", "team": "data"})
    assert made.status_code == 201
    key, ident = made.json()["key"], made.json()["id"]
    assert made.json()["last4"] == key[-4:]
    for replica in (one, two):
        accepted(replica, key)
        assert upstream[0].requests[-1].header("x-api-key") == COMPANY_ANTHROPIC
    listed = two.http.get("/api/v1/keys", params={"user": "gina"}).json()["rows"]
    assert [(row["id"], row["state"]) for row in listed] == [(ident, "active")]
    assert "key" not in listed[0]
    rotated = two.http.post(f"/api/v1/keys/{ident}/rotate", json={"grace_minutes": 5}).json()
    for replica in (one, two):
        accepted(replica, rotated["key"])
        assert replica.http.get("/v1/models", headers={"x-api-key": key}).status_code == 200
    revoked_at = time.monotonic()
    assert one.http.post(f"/api/v1/keys/{ident}/revoke").json()["state"] == "revoked"
    for replica in (one, two):
        for secret in (key, rotated["key"]):
            refused_with(replica, secret, "was revoked at")
    assert time.monotonic() - revoked_at < cache_s + 1.5
    assert one.http.post(f"/api/v1/keys/{ident}/revoke").status_code == 409
    assert one.http.post("/api/v1/keys/tmk_000000000000/revoke").status_code == 404
    audit = one.http.get(f"/api/v1/keys/{ident}/audit").json()["rows"]
    assert [(row["action"], row["actor"]) for row in audit] == [
        ("create", "api"),
        ("rotate", "api"),
        ("revoke", "api"),
    ]


def test_real_claude_code_with_the_env_of_claude_code_env(
    keyed: Proxy,
    upstream: tuple[FakeAnthropic, ServerThread],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from tests.claude_code import claude_binary, run_claude

    claude_binary()  # installed once (or the test skips, outside CI)
    key = create(capsys, "--user", "hana", "--team", "mobile")
    accepted(keyed, key)
    assert (
        main(["claude-code", "env", "--key", key, "--url", keyed.url, "--format", "settings"]) == 0
    )
    env = json.loads(capsys.readouterr().out)["env"]
    assert env["ANTHROPIC_AUTH_TOKEN"] == key
    before = len(upstream[0].requests)
    base_url = env.pop("ANTHROPIC_BASE_URL")
    done = run_claude("say hi", home=tmp_path / "home", base_url=base_url, **env)
    assert done.returncode == 0, done.stderr
    sent = upstream[0].requests[before:]
    assert any(r.path == "/v1/messages" for r in sent)
    for request in sent:
        assert key not in repr(request.headers)
        assert request.header("x-api-key") == COMPANY_ANTHROPIC
    users_once_recorded(capsys, {"hana": str(1 + len(sent))})


def test_budgets_me_answers_for_the_key_not_for_a_header(
    keyed: Proxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """``/budgets/me`` needs no admin token, so who is asking must come from the key when there
    is one: a header naming someone else reads nothing of theirs, a refused key reads nothing."""
    key = create(capsys, "--user", "alice", "--team", "platform")
    accepted(keyed, key)
    spoofed = {"x-api-key": key, "x-tokenmeter-user": "bob", "x-tokenmeter-team": "x"}
    me = keyed.http.get("/api/v1/budgets/me", headers=spoofed)
    assert me.status_code == 200, me.text
    assert (me.json()["user"], me.json()["team"]) == ("alice", "platform")
    wrong = {"x-api-key": key[:-4] + "zzzz"}
    assert keyed.http.get("/api/v1/budgets/me", headers=wrong).status_code == 401
