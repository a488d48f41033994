"""Settings: the config file, where each value comes from, misspelled names, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.config import (
    Settings,
    SettingsError,
    config_file,
    load_settings,
    origins,
    unknown_variables,
)


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TOKENMETER_CONFIG: the file is looked for in the working directory (tmp_path) and
    $XDG_CONFIG_HOME/tokenmeter/."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("TOKENMETER_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_the_default_database_is_in_the_data_directory_not_the_working_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = Settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/tokenmeter/tokenmeter.db"
    assert settings.spool_dir == tmp_path / "data" / "tokenmeter" / "spool"


def test_config_file_in_the_working_directory_is_read(no_config: Path) -> None:
    (no_config / "tokenmeter.toml").write_text('port = 9090\nusd_per_currency = {EUR = "1.16"}\n')
    settings = load_settings()
    assert settings.port == 9090
    assert str(settings.usd_per_currency["EUR"]) == "1.16"
    assert origins()["port"] == f"port in {no_config / 'tokenmeter.toml'}"


def test_config_file_in_xdg_config_home_is_read(
    no_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = no_config / "cfg"
    (home / "tokenmeter").mkdir(parents=True)
    (home / "tokenmeter" / "tokenmeter.toml").write_text("workers = 3\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    assert config_file() == home / "tokenmeter" / "tokenmeter.toml"
    assert load_settings().workers == 3


def test_environment_beats_the_file_and_arguments_beat_both(
    no_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_config / "tokenmeter.toml").write_text("port = 9090\nworkers = 2\n")
    monkeypatch.setenv("TOKENMETER_PORT", "9191")
    settings = load_settings({"workers": 4})
    assert (settings.port, settings.workers) == (9191, 4)
    where = origins({"workers": 4})
    assert (where["port"], where["workers"], where["host"]) == (
        "TOKENMETER_PORT",
        "--workers",
        "default",
    )


def test_unknown_name_in_the_file_is_an_error_with_the_closest_name(no_config: Path) -> None:
    (no_config / "tokenmeter.toml").write_text('databse_url = "sqlite+aiosqlite:///x.db"\n')
    with pytest.raises(SettingsError, match="unknown setting 'databse_url': did you mean"):
        load_settings()


def test_a_file_that_is_not_toml_names_its_line(no_config: Path) -> None:
    (no_config / "tokenmeter.toml").write_text("port = 1\nhost = = 2\n")
    with pytest.raises(SettingsError, match=r"tokenmeter.toml: not valid TOML: .*line 2"):
        load_settings()


def test_an_explicit_config_file_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENMETER_CONFIG", "/no/such/tokenmeter.toml")
    with pytest.raises(SettingsError, match="TOKENMETER_CONFIG=/no/such/tokenmeter.toml"):
        load_settings()


def test_misspelled_variables_are_named_with_the_closest_setting() -> None:
    found = unknown_variables(
        {
            "TOKENMETER_DATABSE_URL": "postgresql+asyncpg://x",
            "TOKENMETER_PORT": "1",
            "PROMETHEUS_MULTIPROC_DIR": "/var/run/metrics",
            "TOKENMETER_CONFIG": "x.toml",
            "PATH": "/bin",
        }
    )
    assert found == [
        "TOKENMETER_DATABSE_URL is not a setting and is ignored: "
        "did you mean TOKENMETER_DATABASE_URL?"
    ]


def test_every_setting_has_a_valid_variable_name() -> None:
    """A new field is known to the unknown-variable check with no list to update."""
    env = {f"TOKENMETER_{name.upper()}": "x" for name in Settings.model_fields}
    env.pop("TOKENMETER_PROMETHEUS_MULTIPROC_DIR")  # its variable is prometheus_client's own
    assert unknown_variables(env) == []


def test_bad_values_are_one_line_naming_their_source(
    no_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_config / "tokenmeter.toml").write_text("port = 99999\n")
    monkeypatch.setenv("TOKENMETER_ADMIN_TOKEN", "short")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert f"port in {no_config / 'tokenmeter.toml'}: Input should be less than" in message
    assert "TOKENMETER_ADMIN_TOKEN: must be at least 16 characters" in message
    assert "short" not in message  # a secret is never echoed, even a bad one
