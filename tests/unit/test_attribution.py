"""Who pays: headers, path prefix, key map and Claude Code's own session, strongest first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.attribution import (
    Identifier,
    KeyOwner,
    RoutedPath,
    fingerprint,
    load_key_owners,
    session_from_metadata,
    split_path,
)

SESSION = "11111111-1111-4111-8111-111111111111"
TRAFFIC = Path(__file__).parents[1] / "fixtures" / "claude-code-traffic.jsonl"


def headers(**values: str) -> dict[bytes, bytes]:
    return {k.replace("_", "-").lower().encode(): v.encode() for k, v in values.items()}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/messages", RoutedPath("/v1/messages")),
        ("/u/alice/v1/messages", RoutedPath("/v1/messages", "alice", None)),
        ("/t/demo-42/v1/messages", RoutedPath("/v1/messages", None, "demo-42")),
        ("/u/alice/t/demo-42/v1/messages", RoutedPath("/v1/messages", "alice", "demo-42")),
        ("/t/demo-42", RoutedPath("/", None, "demo-42")),
    ],
)
def test_split_path(path: str, expected: RoutedPath) -> None:
    assert split_path(path) == expected


def test_headers_beat_path_and_session_fills_in() -> None:
    ident = Identifier("salt")
    got = ident.identify(
        headers(
            x_tokenmeter_user="alice", x_tokenmeter_task="T-1", x_claude_code_session_id=SESSION
        ),
        RoutedPath("/v1/messages", "mallory", "other"),
    )
    assert (got.user, got.task, got.session, got.source) == ("alice", "T-1", SESSION, "header")


def test_session_is_the_task_when_no_task_is_named() -> None:
    got = Identifier("salt").identify(
        headers(x_claude_code_session_id=SESSION), RoutedPath("/v1/m")
    )
    assert (got.task, got.session, got.source) == (SESSION, SESSION, "client")


def test_key_map_names_the_person_behind_a_key() -> None:
    fp = fingerprint("sk-ant-api03-secret", "pepper")
    ident = Identifier("pepper", {fp: KeyOwner("dana", "infra")})
    got = ident.identify(headers(authorization="Bearer sk-ant-api03-secret"), RoutedPath("/v1/m"))
    assert (got.user, got.team, got.source, got.key_fingerprint) == ("dana", "infra", "key_map", fp)
    assert "secret" not in repr(got)


def test_fingerprint_is_salted_and_stable() -> None:
    assert fingerprint("k", "a") == fingerprint("k", "a")
    assert fingerprint("k", "a") != fingerprint("k", "b")
    assert fingerprint("k", "a").startswith("fp_")


@pytest.mark.parametrize(
    "user_id",
    [
        f"user_{'ab' * 32}_account_5f1c0a1e-0000-4000-8000-000000000000_session_{SESSION}",
        f"user_{'ab' * 32}_account__session_{SESSION}",
        json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": SESSION}),
    ],
)
def test_session_from_claude_code_metadata(user_id: str) -> None:
    assert session_from_metadata(user_id) == SESSION


def test_body_is_read_only_without_a_session_header() -> None:
    ident = Identifier("salt")
    body = json.dumps({"metadata": {"user_id": f"user_x_account__session_{SESSION}"}}).encode()
    assert ident.needs_body(headers(x_api_key="k"))
    assert not ident.needs_body(headers(x_claude_code_session_id=SESSION))
    got = ident.identify(headers(x_api_key="k"), RoutedPath("/v1/m"), body)
    assert got.session == SESSION


def test_labels_that_are_not_labels_are_refused() -> None:
    got = Identifier("salt").identify(headers(x_tokenmeter_user="a b\tc"), RoutedPath("/v1/m"))
    assert got.user is None


def test_captured_claude_code_requests_are_attributed() -> None:
    for line in TRAFFIC.read_text().splitlines():
        record = json.loads(line)
        if record["method"] != "POST":
            continue
        hdrs = {k.lower().encode(): v.encode() for k, v in record["headers"]}
        got = Identifier("salt").identify(hdrs, split_path(record["path"]))
        session = hdrs[b"x-claude-code-session-id"].decode()
        assert got.session == session
        assert got.key_fingerprint is not None
        if record["path"].startswith("/t/"):
            assert got.task == "demo-42"
        else:
            assert got.task == session


def test_key_map_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "keys.json"
    good.write_text(json.dumps({"fp_1": {"user": "ann", "team": "web"}}))
    assert load_key_owners(good) == {"fp_1": KeyOwner("ann", "web")}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fp_1": {"team": "web"}}))
    with pytest.raises(ValueError, match="needs a string 'user'"):
        load_key_owners(bad)
