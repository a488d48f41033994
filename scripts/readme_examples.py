"""Run every example of README.md and check (or rewrite) what README says they print.

``scripts/readme-examples`` starts the fake Anthropic and OpenAI APIs (tests/fakes) and a real
``tokenmeter serve`` on free loopback ports, in a fresh home directory outside the repository
(``~`` in every output), then walks README from top to bottom:

- a ```` ```python ```` block is run (it talks to the proxy like a user's code would);
- each ``$ command`` of a ```` ```console ```` block is run with bash in ``~`` (``tokenmeter``
  on PATH, ``export`` and ``cd`` carry over to later commands) and its output (stdout and
  stderr) is what README must show under it;
- ``<!-- readme-examples: file NAME -->`` before a block writes the block to ``~/NAME``;
- ``<!-- readme-examples: seed -->`` sends the demo traffic (``DEMO`` below) through the proxy.

Before each block the script waits until the proxy has recorded every exchange it answered.
README shows the proxy at 127.0.0.1:8080 and the fakes at 9999 and 9998: commands are run with
the real ports, outputs are written back with README's. Check mode (the default) compares each
console block with what was printed, allowing only times, dates, ids and ports to differ, prints
a diff and exits 1 on a difference; ``--write`` rewrites README's console blocks in place.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.anthropic_upstream import FakeAnthropic  # noqa: E402
from tests.fakes.openai_upstream import FakeOpenAI  # noqa: E402
from tests.servers import ServerThread, free_port  # noqa: E402

README = ROOT / "README.md"
BIN = ROOT / ".venv" / "bin"
PROXY_PORT, ANTHROPIC_PORT, OPENAI_PORT = 8080, 9999, 9998
FENCE = re.compile(r"^(?P<indent> *)```(?P<kind>\w*)\s*$")
DIRECTIVE = re.compile(r"<!-- readme-examples: (?P<what>\w+) ?(?P<arg>\S*) -->")

# The demo traffic: (task, user, team, model, requests, tokens per request by kind). An agentic
# profile: ~300 input tokens per output token, 92 % of input read from cache.
AGENTIC = {"input": 1500, "cache_write_5m": 10500, "cache_read": 138000, "output": 500}
DEMO = [
    ("JIRA-1234", "ada", "core", "claude-opus-4-7", 40, AGENTIC),
    ("JIRA-1234", "bob", "core", "claude-opus-4-7", 32, AGENTIC),
    ("JIRA-1240", "ada", "core", "claude-opus-4-7", 25, AGENTIC),
    ("WEB-77", "cyd", "web", "claude-sonnet-4-5", 8, AGENTIC),
    ("WEB-80", "eve", "web", "claude-haiku-4-5", 5, AGENTIC),
    ("LAB-1", "ada", "core", "claude-private-x", 3, {"input": 180, "output": 40}),
]
# Seat traffic (a claude.ai login: OAuth bearer and the OAuth beta flag): (user, team, model,
# requests, tokens per request). One long Claude Code turn on a 1M context is ~$1.04 at list
# price: alice's month is worth more than a $200 seat, tom's less than a $100 one.
LONG_TURN = {"input": 5000, "cache_write_5m": 50_000, "cache_read": 1_000_000, "output": 8000}
SEAT_DEMO = [
    ("alice", "platform", "claude-opus-4-8", 250, LONG_TURN),
    ("tom", "platform", "claude-opus-4-8", 60, LONG_TURN),
]
BROKEN_CSV = """user,name,team,annual_compensation,currency,effective_from
ada,Ada,core,210000,USD,2026-01-01
bob,Bob,core,165 000,USS,2026-01-01
cyd,Cyd,web,140000,USD,2026-13-01
ada,Ada,core,1,USD,2026-01-01
"""

# What may differ between two runs: times, dates, ids, ports, process ids.
VARYING = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?"), "<T>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<D>"),
    (re.compile(r"\b\d{4}-\d{2}\b"), "<MONTH>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<ID>"),
    (re.compile(r"\b(req|msg|resp|chatcmpl)_[0-9A-Za-z]+"), r"\1_<ID>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<PORT>"),
    (re.compile(r"\bpid \d+"), "pid <PID>"),
]


@dataclass
class Block:
    """A fenced block of README: its kind, its lines (indent removed), where it sits."""

    kind: str
    indent: str
    start: int  # index of the first line inside the fence
    lines: list[str]
    directives: list[tuple[str, str]] = field(default_factory=list)


def blocks(lines: list[str]) -> Iterator[Block]:
    pending: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        found = DIRECTIVE.search(lines[i])
        if found:
            pending.append((found["what"], found["arg"]))
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, end = opening["indent"], i + 1
        while not (FENCE.match(lines[end]) and lines[end].strip() == "```"):
            end += 1
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        yield Block(opening["kind"], indent, i + 1, body, pending)
        pending, i = [], end + 1


def normalized(text: str) -> str:
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text


class World:
    """The fakes, the proxy and the shell state the examples run in."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.anthropic = ServerThread(FakeAnthropic()).__enter__()
        self.openai = ServerThread(FakeOpenAI()).__enter__()
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENMETER_")}
        self.env |= {"HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "200"}
        # Settings tokenmeter also reads under their standard names: the examples must not
        # depend on the machine that runs them.
        machine = (
            "SSL_CERT_FILE",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "NO_PROXY",
            "PROMETHEUS_MULTIPROC_DIR",
        )
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "VIRTUAL_ENV", *machine):
            self.env.pop(name, None)
            self.env.pop(name.lower(), None)
        self.env |= {"ANTHROPIC_API_KEY": "sk-ant-demo", "OPENAI_API_KEY": "sk-proj-demo"}
        self.cwd = home
        self.proxy = self._serve()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def _serve(self) -> subprocess.Popen[bytes]:
        env = self.env | {
            "TOKENMETER_PORT": str(self.port),
            "TOKENMETER_ANTHROPIC_UPSTREAM": self.anthropic.url,
            "TOKENMETER_OPENAI_UPSTREAM": self.openai.url,
            "TOKENMETER_RECORDER_FLUSH_INTERVAL_S": "0.05",
            "TOKENMETER_USD_PER_CURRENCY": '{"EUR": "1.16"}',
        }
        log = (self.home / "proxy.log").open("wb")
        proxy = subprocess.Popen(  # noqa: S603 (our own console script)
            [str(BIN / "tokenmeter"), "serve"], cwd=self.home, env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return proxy
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the proxy did not start: {(self.home / 'proxy.log').read_text()}")

    def close(self) -> None:
        self.http.close()
        self.proxy.terminate()
        self.proxy.wait(timeout=30)
        self.anthropic.__exit__(None, None, None)
        self.openai.__exit__(None, None, None)

    def live(self, text: str) -> str:
        """README's addresses -> the running ones."""
        text = text.replace(f"127.0.0.1:{PROXY_PORT}", f"127.0.0.1:{self.port}")
        text = text.replace(f"127.0.0.1:{ANTHROPIC_PORT}", self.anthropic.url[7:])
        return text.replace(f"127.0.0.1:{OPENAI_PORT}", self.openai.url[7:])

    def shown(self, text: str) -> str:
        """The running addresses and home directory -> README's."""
        text = text.replace(f"127.0.0.1:{self.port}", f"127.0.0.1:{PROXY_PORT}")
        text = text.replace(self.anthropic.url[7:], f"127.0.0.1:{ANTHROPIC_PORT}")
        text = text.replace(self.openai.url[7:], f"127.0.0.1:{OPENAI_PORT}")
        return text.replace(str(self.home), "~")

    def settle(self) -> None:
        """Wait until every exchange the proxy answered is in its database."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = self.http.get("/metrics").text
            answered = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("tokenmeter_requests_total{")
            )
            usage = self.http.get("/api/v1/usage", params={"group_by": "provider"}).json()
            # >=: events the proxy never answered (a backfill from the CLI) are recorded too
            if usage["total"]["requests"] >= answered:
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"the proxy did not record every exchange in time ({usage['total']['requests']} "
            f"recorded, {answered} answered)"
        )

    def run(self, command: str) -> str:
        """One console command in the shared shell state; its output as README shows it."""
        words = shlex.split(command, comments=True)
        if words[:1] == ["export"]:
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value
            return ""
        if words[:1] == ["cd"]:
            self.cwd = (self.cwd / os.path.expanduser(words[1])).resolve()
            return ""
        done = subprocess.run(  # noqa: S603 (README's own examples, on loopback)
            ["/bin/bash", "-c", self.live(command)],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        return self.shown(done.stdout)

    def python(self, code: str) -> None:
        script = self.home / "example.py"
        script.write_text(self.live(code))
        done = subprocess.run(  # noqa: S603
            [str(BIN / "python"), str(script)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"README python example failed:\n{code}\n{done.stderr}")

    def seed(self, which: str = "") -> None:
        if which == "seats":
            self._seed_seats()
            return
        for task, user, team, model, count, tokens in DEMO:
            usage = {
                "input_tokens": tokens.get("input", 0),
                "cache_creation_input_tokens": tokens.get("cache_write_5m", 0),
                "cache_read_input_tokens": tokens.get("cache_read", 0),
                "output_tokens": tokens["output"],
            }
            headers = {
                "x-api-key": "sk-ant-demo",
                "anthropic-version": "2023-06-01",
                "x-tokenmeter-task": task,
                "x-tokenmeter-user": user,
                "x-tokenmeter-team": team,
                "x-fake-usage": json.dumps(usage),
            }
            body = {
                "model": model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "go"}],
            }
            for _ in range(count):
                self.http.post("/v1/messages", json=body, headers=headers).raise_for_status()

    def _seed_seats(self) -> None:
        for user, team, model, count, tokens in SEAT_DEMO:
            headers = {
                "authorization": f"Bearer sk-ant-oat01-demo-{user}",
                "anthropic-beta": "oauth-2025-04-20",
                "anthropic-version": "2023-06-01",
                "x-tokenmeter-user": user,
                "x-tokenmeter-team": team,
                "x-fake-usage": json.dumps(_wire_usage(tokens)),
            }
            body = {
                "model": model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "go"}],
            }
            for _ in range(count):
                self.http.post("/v1/messages", json=body, headers=headers).raise_for_status()


def _wire_usage(tokens: dict[str, int]) -> dict[str, int]:
    return {
        "input_tokens": tokens.get("input", 0),
        "cache_creation_input_tokens": tokens.get("cache_write_5m", 0),
        "cache_read_input_tokens": tokens.get("cache_read", 0),
        "output_tokens": tokens["output"],
    }


def console(world: World, block: Block) -> list[str]:
    """Run a console block's commands; the block as it should read."""
    out: list[str] = []
    for line in block.lines:
        if line.startswith("$ "):
            out.append(line)
            out += world.run(line[2:]).rstrip("\n").splitlines()
    return out


def run_readme(world: World, lines: list[str]) -> dict[int, list[str]]:
    """Every console block's new lines, by the index of its first line."""
    produced: dict[int, list[str]] = {}
    (world.home / "broken.csv").write_text(BROKEN_CSV)
    for block in blocks(lines):
        for what, arg in block.directives:
            if what == "file":
                (world.cwd / arg).write_text("\n".join(block.lines) + "\n")
            elif what == "seed":
                world.seed(arg)
        world.settle()
        if block.kind == "python":
            world.python("\n".join(block.lines))
        elif block.kind == "console":
            produced[block.start] = console(world, block)
    return produced


def rewritten(lines: list[str], produced: dict[int, list[str]]) -> list[str]:
    out: list[str] = []
    by_start = {b.start: b for b in blocks(lines)}
    i = 0
    while i < len(lines):
        block = by_start.get(i)
        if block is None or i not in produced:
            out.append(lines[i])
            i += 1
            continue
        out += [f"{block.indent}{line}".rstrip() for line in produced[i]]
        i += len(block.lines)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run README's examples; check or rewrite it.")
    parser.add_argument("--write", action="store_true", help="rewrite README.md in place")
    args = parser.parse_args(argv)
    lines = README.read_text().splitlines()
    with tempfile.TemporaryDirectory(prefix="tokenmeter-readme-") as tmp:
        world = World(Path(tmp))
        try:
            produced = run_readme(world, lines)
        finally:
            world.close()
    new = rewritten(lines, produced)
    if args.write:
        README.write_text("\n".join(new) + "\n")
        print(f"README.md: {len(produced)} console blocks written")
        return 0
    before, after = [normalized(line) for line in lines], [normalized(line) for line in new]
    if before == after:
        print(f"README.md: {len(produced)} console blocks match what their commands print")
        return 0
    # Times, ids and ports are shown as <T>, <ID>, <PORT>: the diff holds only real changes.
    sys.stdout.writelines(
        difflib.unified_diff(
            [f"{line}\n" for line in before],
            [f"{line}\n" for line in after],
            "README.md",
            "what the commands print",
        )
    )
    print("README.md differs from what its examples print: scripts/readme-examples --write")
    return 1


if __name__ == "__main__":
    sys.exit(main())
