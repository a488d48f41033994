"""Rows as CSV for spreadsheets: what every surface's download writes (API and dashboard).

Nested objects in a row (``tokens``) become dotted columns (``tokens.input``). Money stays the
exact decimal string.

Names in a row come from clients (``x-tokenmeter-user: =HYPERLINK(…)`` is a valid user), and a
spreadsheet runs a cell that starts with ``= + - @`` (or a tab or CR) as a formula. Such a text
cell is written with a leading ``'``, which spreadsheets show as text (OWASP's advice for CSV
injection); numbers, negative ones included, are written as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

CSV_TYPE = "text/csv"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"tokens": {"input": 1}}`` -> ``{"tokens.input": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = " ".join(str(item) for item in value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    flat = [flatten(row) for row in rows]
    columns: dict[str, None] = {}
    for row in flat:
        columns |= dict.fromkeys(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in flat)
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A value a spreadsheet shows rather than runs (see the module doc)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
