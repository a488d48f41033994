"""Single sign-on: bearer JWTs of a fake IdP (loopback JWKS, keys made per test) name the user,
the company key goes upstream, and every token that can't be verified is a clear 401."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import anthropic
import pytest

from proxy.oidc import REFRESH_COOLDOWN_S
from tests.conftest import Proxy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.idp import FakeIdP
from tests.servers import ServerThread

COMPANY = "sk-ant-company-MARKER-sso"


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    fake = FakeIdP()
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def sso(make_proxy: Callable[..., Proxy], idp: FakeIdP) -> Proxy:
    return make_proxy(oidc_issuer=idp.url, oidc_audience=idp.audience, anthropic_api_key=COMPANY)


def ask(proxy: Proxy, token: str, **headers: str) -> anthropic.types.Message:
    with anthropic.Anthropic(
        base_url=proxy.url, api_key=token, max_retries=0, default_headers=headers
    ) as claude:
        return claude.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )


def refused(proxy: Proxy, token: str) -> str:
    answer = proxy.http.get("/v1/models", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "authentication_error"
    message: str = answer.json()["error"]["message"]
    return message


def test_a_token_of_the_idp_names_the_user_and_team(
    sso: Proxy, idp: FakeIdP, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    token = idp.issue("ines@corp.example", groups=["payments", "everyone"])
    ask(sso, token, **{"x-tokenmeter-user": "mallory", "x-tokenmeter-task": "PAY-7"})
    sent = upstream[0].requests[-1]
    assert sent.header("x-api-key") == COMPANY
    assert token not in repr(sent.headers)
    task = sso.task("PAY-7", 1)
    assert task["requests"] == 1
    assert sso.metric("tokenmeter_identity_overrides_total", source="oidc") == 1
    users = sso.http.get("/api/v1/usage", params={"group_by": "user"})
    assert "ines@corp.example" in users.text
    assert "mallory" not in users.text


def test_expired_foreign_audience_and_malformed_tokens_are_refused(
    sso: Proxy, idp: FakeIdP, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    past = int(time.time()) - 3600
    assert "expired" in refused(sso, idp.issue("ines", exp=past))
    assert "Audience" in refused(sso, idp.issue("ines", aud="another-app"))
    assert "issuer" in refused(sso, idp.issue("ines", iss="https://evil.example")).lower()
    assert "not-published" in refused(sso, idp.foreign("ines"))
    assert "not a JWT" in refused(sso, "eyJhbGciOi.bm90.anNvbg")
    head, _, signature = idp.issue("ines").split(".")
    other = idp.issue("mallory").split(".")[1]  # ines's signature on mallory's claims
    assert "Signature verification failed" in refused(sso, f"{head}.{other}.{signature}")
    assert upstream[0].requests == []
    assert sso.metric("tokenmeter_requests_refused_total", reason="expired_token") == 1


def test_a_new_signing_key_is_fetched_on_its_first_token(sso: Proxy, idp: FakeIdP) -> None:
    ask(sso, idp.issue("ines"))
    fetched = idp.jwks_requests
    ask(sso, idp.issue("ines"))
    assert idp.jwks_requests == fetched  # cached: no fetch per request
    idp.rotate("k2")
    sso.app.parts.forwarder._oidc._refreshed_at -= REFRESH_COOLDOWN_S  # type: ignore[union-attr]
    ask(sso, idp.issue("ines", kid="k2"))
    assert idp.jwks_requests == fetched + 1


def test_an_unreachable_idp_fails_closed(
    sso: Proxy, idp: FakeIdP, upstream: tuple[FakeAnthropic, ServerThread]
) -> None:
    idp.down = True
    assert "unreachable" in refused(sso, idp.issue("ines"))
    assert upstream[0].requests == []
    assert sso.metric("tokenmeter_requests_refused_total", reason="idp_unreachable") == 1
    idp.down = False
    ask(sso, idp.issue("ines"))  # back: the next token fetches the keys again
