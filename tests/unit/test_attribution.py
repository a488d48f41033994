"""Who pays: headers, path prefix, key map and Claude Code's own session, strongest first."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from proxy.attribution import (
    MAX_VALUE_CHARS,
    AttributionError,
    Identifier,
    KeyOwner,
    RoutedPath,
    Verified,
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


def test_key_map_owner_wins_over_headers_and_the_attempt_is_counted() -> None:
    fp = fingerprint("sk-ant-api03-secret", "pepper")
    seen: list[str] = []
    ident = Identifier("pepper", {fp: KeyOwner("alice", "core")}, seen.append)
    spoof = headers(
        x_api_key="sk-ant-api03-secret", x_tokenmeter_user="bob", x_tokenmeter_task="JIRA-1"
    )
    got = ident.identify(spoof, RoutedPath("/v1/m", user="carol"))
    assert (got.user, got.team, got.task, got.source) == ("alice", "core", "JIRA-1", "key_map")
    assert seen == ["key_map"]
    same = headers(x_api_key="sk-ant-api03-secret", x_tokenmeter_user="alice")
    assert ident.identify(same, RoutedPath("/v1/m")).user == "alice"
    assert seen == ["key_map"]  # naming the owner is no attempt to override


def test_a_verified_key_decides_user_and_team() -> None:
    ident = Identifier("pepper")
    verified = Verified(KeyOwner("alice", "core"), "tmk_0123456789ab")
    got = ident.identify(
        headers(x_tokenmeter_user="bob", x_tokenmeter_team="x"), RoutedPath("/v1/m"), b"", verified
    )
    assert (got.user, got.team, got.source, got.key_fingerprint) == (
        "alice",
        "core",
        "key",
        "tmk_0123456789ab",
    )


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


@pytest.mark.parametrize(
    "value",
    [
        "al/ice",
        'say "hi"',
        "O'Brien, Jr. (platform)",
        "Zoë Ångström",
        "中文用户",
        "👩\u200d💻 dev",  # a zero-width joiner is a format character, not a control
        "=1+2",
        "x" * MAX_VALUE_CHARS,
    ],
)
def test_any_printable_value_is_kept_as_sent(value: str) -> None:
    raw = {b"x-tokenmeter-user": value.encode(), b"x-tokenmeter-task": value.encode()}
    got = Identifier("salt").identify(raw, RoutedPath("/v1/m"))
    assert (got.user, got.task, got.source) == (value, value, "header")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"a b\tc", "control character U+0009"),
        (b"alice\x1b[31m", "control character U+001B"),
        ("evil\u202egnp.exe".encode(), "control character U+202E"),
        ("line\u2028break".encode(), "control character U+2028"),
        ("c1\u0085".encode(), "control character U+0085"),
        (b"stray \x85 byte", "control character U+0085"),  # not UTF-8: read as ISO-8859-1
        (b"x" * (MAX_VALUE_CHARS + 1), f"{MAX_VALUE_CHARS + 1} characters long"),
    ],
)
def test_values_that_cannot_be_stored_as_sent_are_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(AttributionError, match=f"^x-tokenmeter-team: .*{re.escape(problem)}"):
        Identifier("salt").identify({b"x-tokenmeter-team": raw}, RoutedPath("/v1/m"))


def test_a_header_that_is_not_utf8_is_read_as_iso_8859_1_as_node_sends_it() -> None:
    node = {b"x-tokenmeter-user": b"Jos\xe9", b"x-tokenmeter-team": "Équipe".encode()}
    got = Identifier("salt").identify(node, RoutedPath("/v1/m"))
    assert (got.user, got.team) == ("José", "Équipe")


def test_blanks_around_a_value_are_not_part_of_it() -> None:
    got = Identifier("salt").identify(
        {b"x-tokenmeter-user": b"  alice ", b"x-tokenmeter-team": b"   "}, RoutedPath("/v1/m")
    )
    assert (got.user, got.team) == ("alice", None)


def test_path_prefix_values_are_percent_decoded() -> None:
    routed = split_path("/u/al%2Fice%20%E4%B8%AD/t/feat%2Flogin%22/v1/messages")
    assert routed == RoutedPath("/v1/messages", "al%2Fice%20%E4%B8%AD", "feat%2Flogin%22")
    got = Identifier("salt").identify({}, routed)
    assert (got.user, got.task, got.source) == ("al/ice 中", 'feat/login"', "path")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/u/al%0Aice/v1/m", "/u/{user}: the value holds the control character U+000A"),
        ("/t/%FF/v1/m", "/t/{task}: the value is not UTF-8"),
        (f"/t/{'y' * 257}/v1/m", "/t/{task}: the value is 257 characters long"),
    ],
)
def test_a_bad_path_prefix_value_is_refused(path: str, problem: str) -> None:
    with pytest.raises(AttributionError, match=re.escape(problem)):
        Identifier("salt").identify({}, split_path(path))


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
    bad.write_text(json.dumps({"fp_1": {"user": "ann\u001b[0m"}}))
    with pytest.raises(ValueError, match="fp_1 user: the value holds the control character"):
        load_key_owners(bad)
