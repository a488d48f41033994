"""People and compensation: list, set one, import a CSV (all rows or none).

Compensation is sensitive: like every ``/api/`` route these need the admin token (or loopback).
Each write refreshes the ``tokenmeter_annual_compensation_usd`` gauge.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from proxy import people
from proxy.api.tabular import respond

router = APIRouter(prefix="/people", tags=["people"])


class PersonIn(BaseModel):
    """One compensation record; ``effective_from`` defaults to today (UTC)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    team: str | None = None
    annual_compensation: Decimal
    currency: str = "USD"
    effective_from: date | None = None


def _today() -> date:
    return datetime.now(UTC).date()


async def _refresh(request: Request) -> None:
    parts = request.app.state.parts
    usd_per = parts.settings.usd_per_currency
    await people.refresh_gauge(parts.engine, parts.metrics, usd_per, _today())


@router.get("", summary="People in effect on a day (default today), or the whole history")
async def list_people(
    request: Request,
    at: date | None = None,
    history: Annotated[
        bool, Query(description="every dated row, not just those in effect")
    ] = False,
) -> Response:
    rows = await people.load_people(request.app.state.parts.engine)
    if not history:
        rows = sorted(people.in_effect(rows, at or _today()).values(), key=lambda p: p.user)
    data = [person.as_json() for person in rows]
    return respond(request, {"rows": data}, data, "people")


@router.put("/{user:path}", summary="Set a person's team and compensation from a date")
async def put_person(user: str, body: PersonIn, request: Request) -> dict[str, Any]:
    fields = body.model_dump()
    fields["effective_from"] = body.effective_from or _today()
    fields["currency"] = body.currency.upper()
    try:
        person = people.check(people.Person(user=user, **fields))
    except people.PersonError as exc:
        raise HTTPException(422, str(exc)) from exc
    await people.save_people(request.app.state.parts.engine, [person])
    await _refresh(request)
    return person.as_json()


@router.post(
    "/import",
    summary="Import a CSV (text/csv body); the whole file or nothing",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_people(request: Request) -> Response:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the file is not UTF-8 text: {exc}") from exc
    try:
        found = people.parse_csv(text, _today())
    except people.PeopleImportError as exc:
        errors = [{"line": line, "error": message} for line, message in exc.errors]
        return JSONResponse({"detail": "nothing imported", "errors": errors}, status_code=422)
    count = await people.save_people(request.app.state.parts.engine, found)
    await _refresh(request)
    return JSONResponse({"imported": count})
