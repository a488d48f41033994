"""The package's shape, as the user installs and runs it: one top-level package with the
migrations inside, one logger tree, no library client imported unless selected. (Import layering
is import-linter's, in scripts/test.)"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from importlib.resources import files
from pathlib import Path

import proxy

REPO = Path(__file__).parent.parent


def _modules() -> list[str]:
    skip = ("proxy.migrations", "proxy.cli.__main__")  # Alembic's scripts; `python -m` runs main
    modules = pkgutil.walk_packages(proxy.__path__, "proxy.")
    return [module.name for module in modules if not module.name.startswith(skip)]


def test_every_logger_is_in_the_tokenmeter_tree_named_after_its_module() -> None:
    for name in _modules():
        log = getattr(importlib.import_module(name), "log", None)
        if isinstance(log, logging.Logger):
            assert log.name == "tokenmeter" + name.removeprefix("proxy"), name
    assert not [name for name in logging.root.manager.loggerDict if name.startswith("proxy")]


def test_the_library_clients_are_imported_only_when_selected(tmp_path: Path) -> None:
    script = """
import sys
from prometheus_client import CollectorRegistry
from proxy.app import create_app
from proxy.config import Settings
for client in sys.argv[1:]:
    settings = Settings(database_url="sqlite+aiosqlite:///unused.db", upstream_client=client)
    create_app(settings, registry=CollectorRegistry())
    print(client, *sorted(m for m in ("aiohttp", "httpx") if m in sys.modules))
"""
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", script, "http11", "aiohttp", "httpx"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["http11", "aiohttp aiohttp", "httpx aiohttp httpx"]


def test_the_install_adds_one_top_level_package_with_the_migrations_inside() -> None:
    installed = distribution("tokenmeter").read_text("top_level.txt") or ""
    assert installed.split() == ["proxy"]  # no top-level `migrations` beside it
    versions = files("proxy.migrations").joinpath("versions")
    assert {f.name for f in versions.iterdir() if f.name.endswith(".py")} == {
        f.name for f in (REPO / "migrations" / "versions").glob("*.py")
    }


def test_every_package_of_the_source_tree_is_in_the_wheel_s_list() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "proxy").rglob("__init__.py")
    }
    # Directories of data a package ships are listed too: setuptools warns at every install
    # ("Package would be ignored") about one that is importable but not listed.
    data = {
        "proxy.migrations",
        "proxy.migrations.versions",
        "proxy.web.static",
        "proxy.web.templates",
    }
    assert set(setuptools["packages"]) == packages | data
    assert setuptools["package-dir"] == {"proxy.migrations": "migrations"}


def test_a_proxy_without_sso_or_dashboard_visitors_loads_neither_pyjwt_nor_jinja() -> None:
    """The app's import (what every worker pays in memory) leaves PyJWT, cryptography and
    Jinja to the first SSO token and the first page served."""
    code = (
        "import sys, proxy.app; "
        "print(sorted(m for m in ('jwt', 'cryptography', 'jinja2') if m in sys.modules))"
    )
    shown = subprocess.run(  # noqa: S603 (this interpreter, a fixed program)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "[]"
