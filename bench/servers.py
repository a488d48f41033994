"""The servers under test and how each is started against the mock upstream.

* ``direct``: no server, the load goes straight to the mock (the limit);
* ``passthrough``: ``bench.passthrough`` (FastAPI + httpx, no metering: the reference);
* ``passthrough-aiohttp``: the same with aiohttp as the upstream client;
* ``tokenmeter``: ``.venv/bin/tokenmeter serve`` with a throwaway SQLite database (its default
  upstream client, ``http11``);
* ``tokenmeter-aiohttp``, ``tokenmeter-httpx``: the same with ``TOKENMETER_UPSTREAM_CLIENT`` set to
  the library clients, to compare;
* ``tokenmeter-keys``: ``tokenmeter`` with ``TOKENMETER_REQUIRE_KEY=true`` and a company key: the
  load sends a tokenmeter key made with ``tokenmeter keys create`` before start, which the proxy
  checks and swaps for the company key on every request;
* ``tokenmeter-budgets``: ``tokenmeter`` with a hard org budget set, so every request goes
  through the budget check (next to the ``tokenmeter`` row: what budgets cost);
* ``litellm``: LiteLLM's proxy with its local cost map (no network call), when importable.

``launch`` starts one on the server core, waits for its port, and returns the ``Child`` (None
for direct), the URL the load generator should hit, and the key it should send (None: the
passthrough key).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Child, Children, free_port, pinned

REPO = Path(__file__).resolve().parent.parent
SERVERS = (
    "direct",
    "passthrough",
    "passthrough-aiohttp",
    "tokenmeter",
    "tokenmeter-aiohttp",
    "tokenmeter-httpx",
    "tokenmeter-keys",
    "tokenmeter-budgets",
    "litellm",
)
DEFAULT_SERVERS = ("direct", "passthrough", "tokenmeter", "tokenmeter-keys")
COMPANY_KEY = "sk-ant-bench-company-key"


@dataclass(frozen=True)
class Setup:
    """Where things are: the mock's base URL, the server core, a scratch dir, LiteLLM's python."""

    upstream: str
    core: int
    scratch: Path
    litellm_python: str


def litellm_importable(python: str) -> bool:
    """Whether ``python`` can import LiteLLM's proxy (checked in a child: it imports slowly)."""
    check = [python, "-c", "import litellm.proxy.proxy_cli"]
    try:
        done = subprocess.run(check, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def launch(children: Children, name: str, setup: Setup) -> tuple[Child | None, str, str | None]:
    """Start server ``name``; returns (its process or None for direct, its messages URL, the
    key to send)."""
    if name == "direct":
        return None, f"{setup.upstream}/v1/messages", None
    port = free_port()
    command, env = _command(name, port, setup)
    key = _make_key(command[0], env) if name == "tokenmeter-keys" else None
    child = children.start(name, pinned(command, setup.core), env=env, cwd=REPO)
    child.wait_port(port, timeout_s=120 if name == "litellm" else 60)
    return child, f"http://127.0.0.1:{port}/v1/messages", key


def _make_key(tokenmeter: str, env: dict[str, str]) -> str:
    """Create the database and one key in it, as an admin would before the proxy starts."""
    subprocess.run([tokenmeter, "db", "upgrade"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [tokenmeter, "keys", "create", "--user", "bench", "--team", "perf"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip()


def _command(name: str, port: int, setup: Setup) -> tuple[list[str], dict[str, str]]:
    env = _base_env()
    python = sys.executable
    if name in ("passthrough", "passthrough-aiohttp"):
        client = "aiohttp" if name.endswith("aiohttp") else "httpx"
        command = [python, "-m", "bench.passthrough", "--port", str(port)]
        return [*command, "--upstream", setup.upstream, "--client", client], env
    if name.startswith("tokenmeter"):
        client = name.partition("-")[2] or "http11"
        tokenmeter = str(Path(python).parent / "tokenmeter")
        env = {**env, **_tokenmeter_env(setup)}
        keys = {"TOKENMETER_REQUIRE_KEY": "true", "TOKENMETER_ANTHROPIC_API_KEY": COMPANY_KEY}
        if client == "keys":
            client = "http11"
            env = {**env, **keys}
        if client == "budgets":
            client = "http11"
            _set_org_budget(tokenmeter, env)
        command = [tokenmeter, "serve", "--port", str(port)]
        return command, {**env, "TOKENMETER_UPSTREAM_CLIENT": client}
    if name == "litellm":
        return _litellm_command(port, setup), {**env, **_litellm_env()}
    raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")


def _set_org_budget(tokenmeter: str, env: dict[str, str]) -> None:
    """A hard org budget no bench reaches, in the server's database, before it starts."""
    budget = ["budget", "set", "--org", "--period", "month", "--usd", "1000000"]
    for args in (["db", "upgrade"], budget):
        subprocess.run([tokenmeter, *args], env=env, check=True, capture_output=True)


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(REPO)  # bench.*; proxy.migrations comes with the (editable) install
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _tokenmeter_env(setup: Setup) -> dict[str, str]:
    db = setup.scratch / f"tokenmeter-{os.getpid()}-{free_port()}.db"
    return {
        "TOKENMETER_ANTHROPIC_UPSTREAM": setup.upstream,
        "TOKENMETER_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "TOKENMETER_SPOOL_DIR": str(setup.scratch / "spool"),
        "TOKENMETER_HOST": "127.0.0.1",
    }


def _litellm_env() -> dict[str, str]:
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # price from the bundled map: no network call
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        # No master key: the bench's clients send a fake Anthropic key, on loopback only.
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }


def _litellm_command(port: int, setup: Setup) -> list[str]:
    config = setup.scratch / f"litellm-{port}.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: claude-opus-4-8\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-opus-4-8\n"
        f"      api_base: {setup.upstream}\n"
        "      api_key: sk-ant-bench-not-a-real-key\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    command = [setup.litellm_python, "-m", "litellm.proxy.proxy_cli", "--config", str(config)]
    return [*command, "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
