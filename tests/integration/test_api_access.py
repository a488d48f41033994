"""The API's loopback-only rule against spoofed client addresses, through real servers.

Without ``TOKENMETER_ADMIN_TOKEN``, ``/api/`` answers callers on the proxy's own host only. Each
way a caller could claim to be local is tried: ``X-Forwarded-For``, ``Forwarded``,
``X-Real-IP`` and the ``Host`` header, from a non-loopback address (in a private network
namespace this test creates, against ``tokenmeter serve`` run as an operator would, with
uvicorn's ``FORWARDED_ALLOW_IPS=*``) and from loopback (a reverse proxy on the same host
relays strangers from 127.0.0.1: a relayed request is not a local one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.callers import is_loopback
from tests.conftest import Proxy

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "198.51.100.7"  # tests/netns_probe.py: the namespace's non-loopback address

SPOOFS: dict[str, dict[str, str]] = {
    "x-forwarded-for": {"x-forwarded-for": "127.0.0.1"},
    "x-forwarded-for chain": {"x-forwarded-for": "127.0.0.1, 127.0.0.1"},
    "forwarded": {"forwarded": "for=127.0.0.1;host=localhost;proto=http"},
    "forwarded ipv6": {"forwarded": 'for="[::1]"'},
    "x-real-ip": {"x-real-ip": "127.0.0.1"},
    "host localhost": {"host": "localhost"},
    "host 127.0.0.1": {"host": "127.0.0.1:8080"},
    "everything at once": {
        "x-forwarded-for": "127.0.0.1",
        "forwarded": "for=127.0.0.1",
        "x-real-ip": "127.0.0.1",
        "host": "localhost",
    },
}


def _in_namespace(attempts: list[dict[str, object]]) -> dict[str, int]:
    """Run tests/netns_probe.py in a new user + network namespace; its results."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        _unavailable("unshare or ip (util-linux, iproute2) is missing")
    setup = f"ip link set lo up && ip addr add {REMOTE}/32 dev lo"
    script = f'{setup} && exec "$0" -m tests.netns_probe "$1"'
    command = ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script]
    result = subprocess.run(  # noqa: S603 - our own command line
        [*command, sys.executable, json.dumps(attempts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 and "unshare" in result.stderr and "Operation" in result.stderr:
        _unavailable(result.stderr.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    results: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    return results


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the network-namespace test: {reason}")
    pytest.skip(reason)


def test_no_header_makes_a_remote_caller_local_even_with_forwarded_allow_ips_star() -> None:
    attempts: list[dict[str, object]] = [
        {"name": "loopback, plain", "from": "loopback", "headers": {}},
        {"name": "remote, plain", "from": "remote", "headers": {}},
    ]
    for name, headers in SPOOFS.items():
        attempts.append({"name": f"remote, {name}", "from": "remote", "headers": headers})
    results = _in_namespace(attempts)
    assert results.pop("loopback, plain") == 200  # the namespace works, the API answers
    assert results == dict.fromkeys(results, 403)
    assert len(results) == len(SPOOFS) + 1


@pytest.mark.parametrize("name", [n for n in SPOOFS if not n.startswith("host")])
def test_a_request_relayed_through_loopback_is_not_local(proxy: Proxy, name: str) -> None:
    response = proxy.http.get("/api/v1/people", headers=SPOOFS[name])
    assert response.status_code == 403
    assert "TOKENMETER_ADMIN_TOKEN" in response.json()["detail"]


def test_a_loopback_caller_is_served_whatever_host_it_names(proxy: Proxy) -> None:
    for host in ("localhost", "tokenmeter.example.com", f"{REMOTE}:8080"):
        assert proxy.http.get("/api/v1/people", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", False),  # a name is what a header says, never a socket's peer
        ("127.0.0.1.example.com", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("", False),
    ],
)
def test_is_loopback_judges_addresses_never_names(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
