"""JSON by default, CSV for spreadsheets: ``?format=csv`` or ``Accept: text/csv``.

A report hands over its JSON and its flat rows; nested objects in a row (``tokens``) become
dotted columns (``tokens.input``). Money stays the exact decimal string in both forms.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

CSV_TYPE = "text/csv"


def wants_csv(request: Request) -> bool:
    if request.query_params.get("format") == "csv":
        return True
    return CSV_TYPE in request.headers.get("accept", "")


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
    writer.writerows(flat)
    return out.getvalue()


def respond(request: Request, data: Any, rows: Iterable[Mapping[str, Any]], name: str) -> Response:
    """``data`` as JSON, or ``rows`` as a CSV download named ``name``.csv."""
    if wants_csv(request):
        headers = {"content-disposition": f'attachment; filename="{name}.csv"'}
        return Response(to_csv(rows), media_type=f"{CSV_TYPE}; charset=utf-8", headers=headers)
    return JSONResponse(data)
