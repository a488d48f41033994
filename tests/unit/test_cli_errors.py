"""Every subcommand, found in the argparse tree (a new one is covered with no change here), is
given bad input: an unknown option, a bad value for each option, a database that is not there,
one that was never migrated, a bad setting. Each answer is one line on stderr, exit status 2
for a usage error and 1 for a runtime one, never a traceback, and no database is created.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.cli import build_parser, children, main, walk

MISSING = "/no-such-directory/tokenmeter.db"


def commands(
    parser: argparse.ArgumentParser, path: list[str]
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """(argv prefix, parser) of every command that runs something."""
    kids = children(parser)
    if not kids:
        yield path, parser
    for name, child in kids.items():
        yield from commands(child, [*path, name])


LEAVES = list(commands(build_parser(), []))
IDS = [" ".join(path) for path, _ in LEAVES]


def _fill(action: argparse.Action) -> str:
    """A value the action accepts, so a probe reaches the part it is about."""
    for candidate in ("7d", "1", "x"):
        if action.choices is not None and candidate not in action.choices:
            continue
        try:
            if callable(action.type):
                action.type(candidate)
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            continue
        return candidate
    return next(iter(action.choices)) if action.choices is not None else "x"


def required_args(parser: argparse.ArgumentParser) -> list[str]:
    args: list[str] = []
    for action in parser._actions:
        if not action.option_strings and action.nargs != 0 and action.dest != "help":
            if not isinstance(action, argparse._SubParsersAction):
                args.append(_fill(action))
        elif action.required:
            args += [action.option_strings[0], _fill(action)]
    return args


def value_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = {"--database", "--config"}
    return [
        action
        for action in parser._actions
        if action.option_strings and action.nargs != 0 and action.option_strings[0] not in skip
    ]


@pytest.fixture(autouse=True)
def quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("TOKENMETER_") and name != "TOKENMETER_CONFIG":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TOKENMETER_DATABASE_URL", f"sqlite+aiosqlite://{MISSING}")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exits (usage errors, --help)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, argv: list[str]) -> None:
    assert "Traceback" not in err, argv
    if code == 0:
        return
    assert code in (1, 2), (argv, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith("tokenmeter"), (argv, err)


def test_the_tree_has_the_commands_of_the_issue() -> None:
    assert {"usage", "config", "keys fingerprint", "reattribute", "people import"} <= set(IDS)


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=IDS)
def test_unknown_option_is_one_usage_line(
    capsys: pytest.CaptureFixture[str], path: list[str], parser: argparse.ArgumentParser
) -> None:
    argv = [*path, *required_args(parser), "--no-such-option"]
    code, _, err = run(capsys, argv)
    assert code == 2
    assert_one_line(code, err, argv)
    assert "--no-such-option" in err


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=IDS)
def test_bad_values_are_one_line(
    capsys: pytest.CaptureFixture[str], path: list[str], parser: argparse.ArgumentParser
) -> None:
    for action in value_options(parser):
        for bad in ("!bad!", "-1", ""):
            rest = required_args(parser)
            flag = action.option_strings[0]
            if flag in rest:
                rest[rest.index(flag) : rest.index(flag) + 2] = []
            argv = [*path, *rest, flag, bad]
            code, _, err = run(capsys, argv)
            assert_one_line(code, err, argv)
    assert not Path(MISSING).parent.exists()


SINCE_MISTAKES = ["yesterday", "7days", "2026-13-01", "tomorrow", "2999-01-01"]


WITH_SINCE = [
    path for path, parser in LEAVES if any("--since" in a.option_strings for a in parser._actions)
]


@pytest.mark.parametrize("path", WITH_SINCE, ids=[" ".join(p) for p in WITH_SINCE])
def test_since_mistakes_name_the_argument_and_the_valid_forms(
    capsys: pytest.CaptureFixture[str], path: list[str]
) -> None:
    for text in SINCE_MISTAKES:
        code, _, err = run(capsys, [*path, "--since", text])
        assert code == 2, (path, text)
        assert_one_line(code, err, path)
        assert "argument --since" in err
        assert "is not a time: use 24h, 7d, 2w" in err or "is in the future" in err


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=IDS)
def test_a_missing_database_is_named_and_never_created(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    path: list[str],
    parser: argparse.ArgumentParser,
) -> None:
    for url in (f"sqlite+aiosqlite://{MISSING}", f"sqlite+aiosqlite:///{tmp_path}/absent.db"):
        if "absent" in url and parser.get_default("creates_database"):
            continue  # serve and db upgrade create it: that is their job
        argv = [*path, *required_args(parser), "--database", url]
        code, _, err = run(capsys, argv)
        assert_one_line(code, err, argv)
    assert list(tmp_path.iterdir()) == []
    assert not Path(MISSING).parent.exists()


READERS = [(p, parser) for p, parser in LEAVES if not parser.get_default("creates_database")]


@pytest.mark.parametrize(("path", "parser"), READERS, ids=[" ".join(p) for p, _ in READERS])
def test_a_database_never_migrated_is_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    path: list[str],
    parser: argparse.ArgumentParser,
) -> None:
    """(serve and db upgrade are left out: migrating it is their job)"""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    argv = [*path, *required_args(parser), "--database", f"sqlite+aiosqlite:///{empty}"]
    code, _, err = run(capsys, argv)
    assert_one_line(code, err, argv)


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=IDS)
def test_a_bad_setting_is_one_usage_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    path: list[str],
    parser: argparse.ArgumentParser,
) -> None:
    monkeypatch.setenv("TOKENMETER_PORT", "99999")
    code, _, err = run(capsys, [*path, *required_args(parser)])
    assert code == 2
    assert_one_line(code, err, path)
    assert "TOKENMETER_PORT: Input should be less than or equal to 65535" in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, ["usage", "--debug"])
    assert code == 1
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("tokenmeter: no database at")


def test_misspelled_variable_is_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENMETER_DATABSE_URL", "postgresql+asyncpg://x/y")
    _, _, err = run(capsys, ["config"])
    assert (
        "tokenmeter: warning: TOKENMETER_DATABSE_URL is not a setting and is ignored: "
        "did you mean TOKENMETER_DATABASE_URL?"
    ) in err


def test_a_group_without_its_command_says_which_there_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for path in ([], *(p[:-1] for p, _ in LEAVES if len(p) > 1)):
        group: argparse.ArgumentParser = build_parser()
        for name in path:
            group = children(group)[name]
        code, _, err = run(capsys, list(path))
        assert code == 2
        assert_one_line(code, err, list(path))
        assert "choose a command: " + ", ".join(children(group)) in err


def test_walk_reaches_every_parser() -> None:
    parsers = list(walk(build_parser()))
    assert len(parsers) == len({id(p) for p in parsers}) > len(LEAVES)
