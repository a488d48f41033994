"""JSON by default, CSV for spreadsheets: ``?format=csv`` or ``Accept: text/csv``.

A report hands over its JSON and its flat rows; the CSV is written by ``proxy.tabular`` (nested
objects become dotted columns, money stays the exact decimal string, a cell a spreadsheet would
run as a formula is written as text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from proxy.tabular import CSV_TYPE, to_csv


def wants_csv(request: Request) -> bool:
    if request.query_params.get("format") == "csv":
        return True
    return CSV_TYPE in request.headers.get("accept", "")


def respond(request: Request, data: Any, rows: Iterable[Mapping[str, Any]], name: str) -> Response:
    """``data`` as JSON, or ``rows`` as a CSV download named ``name``.csv."""
    if wants_csv(request):
        headers = {"content-disposition": f'attachment; filename="{name}.csv"'}
        return Response(to_csv(rows), media_type=f"{CSV_TYPE}; charset=utf-8", headers=headers)
    return JSONResponse(data)
