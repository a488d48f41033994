"""proxy.egress and the egress settings: which proxy a URL goes through, NO_PROXY as urllib reads
it, proxy URLs and their credentials, and where the standard variables enter Settings."""

from __future__ import annotations

import base64
import urllib.request
from pathlib import Path

import pytest
import trustme
from pydantic import ValidationError

from proxy.config import Settings
from proxy.egress import Egress, NoProxy, ProxyServer, parse_proxy_url, refused_target

# (NO_PROXY, host, port): urllib.request.proxy_bypass_environment is the reference for these.
URLLIB_CASES = [
    ("", "api.anthropic.com", 443),
    ("*", "api.anthropic.com", 443),
    ("anthropic.com", "api.anthropic.com", 443),
    ("anthropic.com", "anthropic.com", 443),
    (".anthropic.com", "anthropic.com", 443),
    (".anthropic.com", "api.anthropic.com", 443),
    ("anthropic.com", "notanthropic.com", 443),
    ("thropic.com", "api.anthropic.com", 443),
    ("api.anthropic.com", "anthropic.com", 443),
    ("ANTHROPIC.com", "Api.Anthropic.COM", 443),
    ("localhost, 127.0.0.1 ,internal", "127.0.0.1", 8080),
    ("localhost,127.0.0.1", "127.0.0.2", 8080),
    ("gateway.corp:8443", "gateway.corp", 8443),
    ("gateway.corp:8443", "gateway.corp", 443),
    ("corp:8443", "gateway.corp", 8443),
    ("example.com,,  ,openai.com", "api.openai.com", 443),
    ("10.1.2.3", "10.1.2.3", 443),
]


@pytest.mark.parametrize(("no_proxy", "host", "port"), URLLIB_CASES)
def test_no_proxy_agrees_with_urllib(no_proxy: str, host: str, port: int) -> None:
    # Undocumented (what urllib.request.proxy_bypass calls), so typeshed leaves it out.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    reference = bypass(f"{host}:{port}", {"no": no_proxy})
    assert NoProxy(no_proxy).bypass(host, port) == bool(reference)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypass"),
    [
        ("10.0.0.0/8", "10.200.3.4", 443, True),  # CIDR, as curl, Go and requests read it
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),  # names are never resolved to compare
        ("fd00::/8", "[fd00::1]", 443, True),
        ("::1", "::1", 443, True),
        ("[::1]", "[::1]", 443, True),
        ("[::1]:8443", "::1", 8443, True),
        ("[::1]:8443", "::1", 443, False),
        ("*.corp.example", "api.corp.example", 443, True),  # read as .corp.example
        ("*.corp.example", "corp.example", 443, True),
        ("internal,*", "api.anthropic.com", 443, True),  # "*" among others (urllib: only alone)
    ],
)
def test_no_proxy_beyond_urllib(no_proxy: str, host: str, port: int, bypass: bool) -> None:
    assert NoProxy(no_proxy).bypass(host, port) is bypass


def test_proxy_url_with_credentials() -> None:
    proxy = parse_proxy_url("http://alice%40corp:p%3Ass%2Fw@proxy.corp:3128")
    assert (proxy.host, proxy.port, proxy.tls) == ("proxy.corp", 3128, False)
    assert proxy.authorization == b"Basic " + base64.b64encode(b"alice@corp:p:ss/w")
    assert proxy.url == str(proxy) == "http://proxy.corp:3128"
    assert "p:ss" not in repr(proxy)
    assert "Basic" not in repr(proxy)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("proxy.corp:3128", ProxyServer("proxy.corp", 3128)),  # no scheme: http, as curl
        ("http://proxy.corp", ProxyServer("proxy.corp", 80)),
        ("https://proxy.corp", ProxyServer("proxy.corp", 443, tls=True)),
        ("http://[fd00::3]:3128/", ProxyServer("fd00::3", 3128)),
        ("http://user@proxy.corp:3128", ProxyServer("proxy.corp", 3128, False, b"Basic dXNlcjo=")),
    ],
)
def test_proxy_urls(value: str, expected: ProxyServer) -> None:
    assert parse_proxy_url(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("socks5://u:secret@proxy:1080", "SOCKS is not supported"),
        ("http://u:secret@:3128", "no host"),
        ("http://u:secret@proxy:99999", "out of range"),
    ],
)
def test_bad_proxy_settings_fail_at_start_without_echoing_them(value: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as caught:
        Settings(https_proxy=value)
    assert "secret" not in str(caught.value)


def test_routes() -> None:
    egress = Egress(
        https_proxy="http://proxy.corp:3128",
        http_proxy="http://plain.corp:8080",
        no_proxy="localhost,.internal",
    )
    assert egress.route("https://api.anthropic.com/v1/messages") == ProxyServer("proxy.corp", 3128)
    assert egress.route("http://gateway.example/v1") == ProxyServer("plain.corp", 8080)
    assert egress.route("https://localhost:8443/v1/messages") is None
    assert egress.route("https://llm.internal/v1") is None
    assert egress.describe("https://api.openai.com") == "via proxy http://proxy.corp:3128"
    assert Egress(https_proxy="http://proxy.corp:3128").route("http://api.example/") is None
    assert Egress().describe("https://api.anthropic.com") == "direct"


def test_refused_target() -> None:
    assert (
        refused_target("https://api.anthropic.com/v1/messages") == "CONNECT api.anthropic.com:443"
    )
    assert refused_target("https://[::1]:8443/v1") == "CONNECT [::1]:8443"
    assert refused_target("http://gateway:8080/v1/messages") == "http://gateway:8080"


def _clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "http_proxy", "no_proxy", "all_proxy", "request_method"):
        for variant in (name, name.upper(), f"TOKENMETER_{name.upper()}"):
            monkeypatch.delenv(variant, raising=False)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"HTTPS_PROXY": "http://upper:1"}, "http://upper:1"),
        ({"https_proxy": "http://lower:2"}, "http://lower:2"),
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "http://lower:2"),
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}, None),  # lower-case, empty: unset
        ({"HTTPS_PROXY": "http://upper:1", "TOKENMETER_HTTPS_PROXY": "http://tm:3"}, "http://tm:3"),
        ({"HTTPS_PROXY": "http://upper:1", "TOKENMETER_HTTPS_PROXY": ""}, None),  # ours: off
    ],
)
def test_proxy_variables_precedence(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str | None
) -> None:
    _clear_proxy_environment(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert Settings().https_proxy == expected
    if not any(name.startswith("TOKENMETER_") for name in environment):  # urllib agrees
        assert urllib.request.getproxies_environment().get("https") == expected


def test_standard_variables_fill_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://plain:8080")
    monkeypatch.setenv("NO_PROXY", "localhost,10.0.0.0/8")
    monkeypatch.setenv("HTTPS_PROXY", "http://alice:secret@proxy:3128")
    trustme.CA().cert_pem.write_to_path(tmp_path / "system.pem")
    trustme.CA().cert_pem.write_to_path(tmp_path / "company.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system.pem"))
    settings = Settings()
    assert (settings.http_proxy, settings.no_proxy) == ("http://plain:8080", "localhost,10.0.0.0/8")
    assert settings.ca_bundle == tmp_path / "system.pem"
    assert "secret" not in repr(settings)  # a proxy URL may carry a password
    monkeypatch.setenv("TOKENMETER_CA_BUNDLE", str(tmp_path / "company.pem"))
    assert Settings().ca_bundle == tmp_path / "company.pem"  # ours first


def test_ca_bundle_must_hold_certificates(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(ValidationError, match="no PEM certificate"):
        Settings(ca_bundle=tmp_path / "empty.pem")
    with pytest.raises(ValidationError, match="does not point to a file"):
        Settings(ca_bundle=tmp_path / "missing.pem")
