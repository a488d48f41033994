"""Shared fixtures: a fake upstream on a loopback port, the real proxy on another, real clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from proxy.app import TokenmeterApp, create_app
from proxy.config import Settings
from proxy.serving import SERVER_OPTIONS
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.servers import ServerThread, dead_port

pytest_plugins = ["tests.dbfixtures"]


@pytest.fixture(autouse=True)
def hermetic_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings never come from the developer's own files: defaults (database, spool) live in a
    fresh data directory, and the config file is an empty one, whatever ./tokenmeter.toml or
    ~/.config/tokenmeter/ hold."""
    home = tmp_path_factory.mktemp("home")
    (home / "empty.toml").write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(home / "data"))
        patch.setenv("XDG_CONFIG_HOME", str(home / "config"))
        patch.setenv("TOKENMETER_CONFIG", str(home / "empty.toml"))
        yield


class Proxy:
    """A running tokenmeter: its URL, its app object, and a way to read what it recorded."""

    def __init__(self, server: ServerThread, app: TokenmeterApp) -> None:
        self.server = server
        self.app = app
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def task(self, task_id: str, requests: int, timeout: float = 10.0) -> dict[str, Any]:
        """GET /api/v1/tasks/{id} once the recorder has written ``requests`` events for it."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/api/v1/tasks/{quote(task_id, safe='')}")
            if response.status_code == 200 and response.json()["requests"] >= requests:
                data: dict[str, Any] = response.json()
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id}: {response.status_code} {response.text}")
            time.sleep(0.05)

    def metric(self, name: str, **labels: str) -> float:
        value = self.app.parts.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
def upstream() -> Iterator[tuple[FakeAnthropic, ServerThread]]:
    fake = FakeAnthropic()
    with ServerThread(fake) as server:
        yield fake, server


@pytest.fixture
def dead_url() -> Iterator[str]:
    """An http:// base URL on loopback that refuses connections for the whole test."""
    with dead_port() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def make_proxy(
    tmp_path: Path, upstream: tuple[FakeAnthropic, ServerThread]
) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def make(**overrides: Any) -> Proxy:
        fields: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/tokenmeter.db",
            "anthropic_upstream": upstream[1].url,
            "spool_dir": tmp_path / "spool",
            "recorder_flush_interval_s": 0.05,
            **overrides,
        }
        app = create_app(Settings(**fields), registry=CollectorRegistry())
        proxy = Proxy(ServerThread(app, **SERVER_OPTIONS).__enter__(), app)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.http.close()
        proxy.server.__exit__(None, None, None)


@pytest.fixture
def proxy(make_proxy: Callable[..., Proxy]) -> Proxy:
    return make_proxy()


@pytest.fixture
def claude(proxy: Proxy) -> Iterator[anthropic.Anthropic]:
    """The real anthropic SDK pointed at the proxy (no retries: each test sees one exchange)."""
    with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test-123", max_retries=0) as c:
        yield c


@pytest.fixture
def openai_upstream() -> Iterator[tuple[FakeOpenAI, ServerThread]]:
    fake = FakeOpenAI()
    with ServerThread(fake) as server:
        yield fake, server


@pytest.fixture
def openai_proxy(
    make_proxy: Callable[..., Proxy], openai_upstream: tuple[FakeOpenAI, ServerThread]
) -> Proxy:
    """The proxy with its OpenAI upstream pointed at the fake OpenAI."""
    return make_proxy(openai_upstream=openai_upstream[1].url)


@pytest.fixture
def gpt(openai_proxy: Proxy) -> Iterator[openai.OpenAI]:
    """The real openai SDK pointed at the proxy's ``/openai/v1`` (no retries: one exchange)."""
    base_url = f"{openai_proxy.url}/openai/v1"
    with openai.OpenAI(base_url=base_url, api_key="sk-proj-test-123", max_retries=0) as client:
        yield client
