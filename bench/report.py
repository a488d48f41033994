"""Turning measured windows into the table, the targets of issue 8, and the JSON file.

A row is one (workload, concurrency, server) window. Derived columns compare it with the
``direct`` row (added latency, added time to first event) and the ``passthrough`` row (throughput
ratio) of the same workload and concurrency. Targets are reported, never asserted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (heading, row key, format)
    ("req/s", "rps", "{:.0f}"),
    ("x ref", "x_ref", "{:.2f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("+p50 ms", "added_p50_ms", "{:+.2f}"),
    ("+p99 ms", "added_p99_ms", "{:+.2f}"),
    ("ttfe ms", "ttfe_p50_ms", "{:.1f}"),
    ("+ttfe ms", "added_ttfe_ms", "{:+.2f}"),
    ("cpu us/req", "cpu_us_per_req", "{:.0f}"),
    ("cpu us/ev", "cpu_us_per_event", "{:.1f}"),
    ("rss MB", "rss", "{}"),
    ("errors", "errors", "{}"),
)


def derive(rows: list[Row]) -> None:
    """Fill the per-request CPU and the comparisons with direct and passthrough, in place."""
    index = {(r["workload"], r["concurrency"], r["server"]): r for r in rows}
    for row in rows:
        _per_unit(row)
        key = (row["workload"], row["concurrency"])
        direct, ref = index.get((*key, "direct")), index.get((*key, "passthrough"))
        if direct is not None and row["server"] != "direct":
            row["added_p50_ms"] = row["p50_ms"] - direct["p50_ms"]
            row["added_p99_ms"] = row["p99_ms"] - direct["p99_ms"]
            if row.get("ttfe_p50_ms") is not None and direct.get("ttfe_p50_ms") is not None:
                row["added_ttfe_ms"] = row["ttfe_p50_ms"] - direct["ttfe_p50_ms"]
        if ref is not None and ref["rps"] > 0 and row["server"] != "direct":
            row["x_ref"] = row["rps"] / ref["rps"]


def _per_unit(row: Row) -> None:
    cpu = row.get("cpu_s")
    if cpu is None:
        return
    if row["requests"]:
        row["cpu_us_per_req"] = cpu / row["requests"] * 1e6
    if row.get("events"):
        row["cpu_us_per_event"] = cpu / row["events"] * 1e6
    before, after = row.get("rss_before_mb"), row.get("rss_after_mb")
    if before is not None and after is not None:
        row["rss"] = f"{before:.0f}>{after:.0f}"


def table(rows: list[Row]) -> str:
    """An aligned plain-text table, one line per row, a block per workload and concurrency."""
    head = ["workload", "c", "server", *(c[0] for c in COLUMNS)]
    lines: list[list[str]] = [head]
    for row in rows:
        cells = [row["workload"], str(row["concurrency"]), row["server"]]
        cells += [_cell(row.get(key), fmt) for _, key, fmt in COLUMNS]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out: list[str] = []
    previous = lines[0][:2]
    for line in lines:
        if line[:2] != previous and previous != head[:2]:
            out.append("")  # one block per (workload, concurrency): the servers side by side
        previous = line[:2]
        text = [c.ljust(w) for c, w in zip(line[:3], widths[:3], strict=True)]
        text += [c.rjust(w) for c, w in zip(line[3:], widths[3:], strict=True)]
        out.append("  ".join(text).rstrip())
    return "\n".join(out)


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


@dataclass(frozen=True)
class Target:
    """One line of the issue's targets: what was measured against what it must be."""

    name: str
    measured: float | None
    limit: float
    at_most: bool
    unit: str

    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met()]
        value = "-" if self.measured is None else f"{self.measured:.2f}{self.unit}"
        bound = ("<= " if self.at_most else ">= ") + f"{self.limit:g}{self.unit}"
        return f"  {self.name:<44} {value:>12}  (target {bound})  {verdict}"


def targets(rows: list[Row], server: str = "tokenmeter") -> list[Target]:
    """The issue's targets for ``server``, from the rows of this run."""
    pick = _picker(rows)
    json_peak, sse_peak = _peak(rows, "json", server), _peak(rows, "sse", server)
    return [
        Target(
            "added p50 latency, json-real c=16",
            pick("json-real", 16, server, "added_p50_ms"),
            1.0,
            True,
            " ms",
        ),
        Target(
            "added p99 latency, json-real c=16",
            pick("json-real", 16, server, "added_p99_ms"),
            5.0,
            True,
            " ms",
        ),
        Target(
            "added time to first event, sse-real c=16",
            pick("sse-real", 16, server, "added_ttfe_ms"),
            1.0,
            True,
            " ms",
        ),
        Target(
            "JSON req/s vs passthrough (peak)",
            _ratio(json_peak, _peak(rows, "json", "passthrough")),
            0.9,
            False,
            "x",
        ),
        Target(
            "SSE streams/s vs passthrough (peak)",
            _ratio(sse_peak, _peak(rows, "sse", "passthrough")),
            0.9,
            False,
            "x",
        ),
        Target("JSON req/s on one core (peak)", json_peak, 1000, False, ""),
        Target(
            "JSON req/s vs LiteLLM (peak)",
            _ratio(json_peak, _peak(rows, "json", "litellm")),
            15,
            False,
            "x",
        ),
        Target(
            "SSE streams/s vs LiteLLM (peak)",
            _ratio(sse_peak, _peak(rows, "sse", "litellm")),
            15,
            False,
            "x",
        ),
        Target(
            "CPU per SSE event, sse-real c=16",
            pick("sse-real", 16, server, "cpu_us_per_event"),
            60,
            True,
            " us",
        ),
        Target("RSS after load (max over rows)", _max_rss(rows, server), 120, True, " MB"),
    ]


def _picker(rows: list[Row]) -> Callable[[str, int, str, str], float | None]:
    def pick(workload: str, concurrency: int, server: str, key: str) -> float | None:
        for row in rows:
            if (row["workload"], row["concurrency"], row["server"]) == (
                workload,
                concurrency,
                server,
            ):
                value = row.get(key)
                return float(value) if value is not None else None
        return None

    return pick


def _peak(rows: Iterable[Row], workload: str, server: str) -> float | None:
    rates = [r["rps"] for r in rows if r["workload"] == workload and r["server"] == server]
    return max(rates) if rates else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _max_rss(rows: Iterable[Row], server: str) -> float | None:
    sizes = [r["rss_after_mb"] for r in rows if r["server"] == server and r.get("rss_after_mb")]
    return max(sizes) if sizes else None


def write(path: Path, document: dict[str, Any]) -> None:
    """The whole run as JSON (``bench/results/*.json`` is gitignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
