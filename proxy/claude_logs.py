"""Claude Code's own transcripts, read as API responses: what ``tokenmeter backfill`` counts.

Why it exists: usage from before the proxy was installed, or that went around it, is written
down by Claude Code itself: one JSONL file per session under ``~/.claude/projects/<project>/``
(or ``$CLAUDE_CONFIG_DIR/projects/``), with sub-agents in ``<session>/subagents/*.jsonl``.
Each ``"type": "assistant"`` line carries the API's ``message`` (its ``id``, ``model`` and
``usage``) and the ``requestId`` of the response, the ``sessionId``, ``cwd`` and ``gitBranch``.

Contract, as the tools that count these files best do it (ccusage):
- one response is written as several lines (one per content block, the same message id and
  request id); the key is (message id, request id) and the line kept is the one with the
  largest token total (a partial line under-reports output). Every other line of the key is a
  duplicate: this is also how a sub-agent's response replayed in its parent session, or a
  resumed session's copy of earlier lines, is counted once.
- lines Claude Code wrote itself are skipped: ``isApiErrorMessage`` lines (an error shown as a
  message) and the ``<synthetic>`` model.
- usage is read by the Anthropic tap's own reading (``providers.anthropic.message_facts``), so
  cache splits, ``speed`` (fast mode), ``service_tier`` and server tools count as when proxied.
A line that is not JSON, or not an assistant message with usage, is counted in ``lines`` and
otherwise ignored. Reading is pure apart from opening the files named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from proxy.providers.anthropic import message_facts
from proxy.usage import ResponseFacts, as_utc

SYNTHETIC = "<synthetic>"


@dataclass(frozen=True, slots=True)
class LoggedResponse:
    """One API response as a transcript recorded it."""

    message_id: str | None
    request_id: str | None
    at: datetime
    session: str | None
    cwd: str | None
    git_branch: str | None
    sidechain: bool
    facts: ResponseFacts


@dataclass(slots=True)
class Reading:
    """What a read of transcripts found (``responses``) and what it skipped, by reason."""

    files: int = 0
    lines: int = 0
    duplicates: int = 0
    synthetic: int = 0
    errors: int = 0
    responses: list[LoggedResponse] = field(default_factory=list)


def default_dirs(environ: dict[str, str] | None = None) -> list[Path]:
    """Where Claude Code keeps transcripts: ``$CLAUDE_CONFIG_DIR/projects`` (comma-separated
    directories allowed), else ``~/.config/claude/projects`` and ``~/.claude/projects``."""
    env = os.environ if environ is None else environ
    if configured := env.get("CLAUDE_CONFIG_DIR"):
        roots = [Path(part).expanduser() for part in configured.split(",") if part.strip()]
    else:
        home = Path(env.get("HOME") or Path.home())
        roots = [home / ".config" / "claude", home / ".claude"]
    return [root / "projects" for root in roots]


def transcript_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``*.jsonl`` under ``paths`` (a file is taken as named), sorted, each once."""
    found: set[Path] = set()
    for path in paths:
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p for p in path.rglob("*.jsonl") if p.is_file())
    return sorted(found)


def read(files: Iterable[Path]) -> Reading:
    """The responses ``files`` record, each once (module doc)."""
    reading = Reading()
    kept: dict[tuple[str | None, str | None], tuple[int, LoggedResponse]] = {}
    unkeyed: list[LoggedResponse] = []
    for path in files:
        reading.files += 1
        for line in _lines(path):
            reading.lines += 1
            response = _response(line, reading)
            if response is None:
                continue
            key = (response.message_id, response.request_id)
            if key == (None, None):
                unkeyed.append(response)
                continue
            total = response.facts.usage.total_tokens()
            if key in kept:
                reading.duplicates += 1
                if total <= kept[key][0]:
                    continue
            kept[key] = (total, response)
    reading.responses = sorted(
        [r for _, r in kept.values()] + unkeyed, key=lambda r: (r.at, r.message_id or "")
    )
    return reading


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield line


def _response(line: bytes, reading: Reading) -> LoggedResponse | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("type") != "assistant":
        return None
    message = entry.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
        return None
    if entry.get("isApiErrorMessage") is True:
        reading.errors += 1
        return None
    if message.get("model") == SYNTHETIC:
        reading.synthetic += 1
        return None
    at = _time(entry.get("timestamp"))
    if at is None:
        return None
    return LoggedResponse(
        message_id=_str(message.get("id")),
        request_id=_str(entry.get("requestId")),
        at=at,
        session=_str(entry.get("sessionId")),
        cwd=_str(entry.get("cwd")),
        git_branch=_str(entry.get("gitBranch")),
        sidechain=entry.get("isSidechain") is True,
        facts=message_facts(message),
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None
