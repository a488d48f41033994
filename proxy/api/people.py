"""People and compensation: list, set one, import a CSV (all rows or none).

Compensation is sensitive: like every ``/api/`` route these need the admin token (or loopback).
Each write refreshes the ``tokenmeter_annual_compensation_usd`` gauge. A record or file refused
is 422 with the reasons (``errors``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from proxy import people
from proxy.api.deps import ApiParts, CsvDep, EngineDep, PartsDep
from proxy.api.params import Amount, Name
from proxy.api.tabular import respond

router = APIRouter(prefix="/people", tags=["people"])


class PersonIn(BaseModel):
    """One compensation record; ``effective_from`` defaults to today (UTC)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    team: Name | None = None
    annual_compensation: Amount
    currency: str = Field(default="USD", max_length=3)
    effective_from: date | None = None


def _today() -> date:
    return datetime.now(UTC).date()


async def _save(parts: ApiParts, rows: list[people.Person]) -> int:
    """Write ``rows``, then refresh the pay gauge."""
    count = await people.save_people(parts.engine, rows)
    usd_per = parts.settings.usd_per_currency
    await people.refresh_gauge(parts.engine, parts.metrics, usd_per, _today())
    return count


@router.get("", summary="People in effect on a day (default today), or the whole history")
async def list_people(
    request: Request,
    engine: EngineDep,
    at: date | None = None,
    history: Annotated[
        bool, Query(description="every dated row, not just those in effect")
    ] = False,
) -> Response:
    rows = await people.load_people(engine)
    if not history:
        rows = sorted(people.in_effect(rows, at or _today()).values(), key=lambda p: p.user)
    data = [person.as_json() for person in rows]
    return respond(request, {"rows": data}, data, "people")


@router.put("/{user:path}", summary="Set a person's team and compensation from a date")
async def put_person(user: Name, body: PersonIn, parts: PartsDep) -> dict[str, Any]:
    fields = body.model_dump()
    fields["effective_from"] = body.effective_from or _today()
    fields["currency"] = body.currency.upper()
    person = people.check(people.Person(user=user, **fields))
    await _save(parts, [person])
    return person.as_json()


@router.post(
    "/import",
    summary="Import a CSV (text/csv body); the whole file or nothing",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_people(parts: PartsDep, text: CsvDep) -> Response:
    count = await _save(parts, people.parse_csv(text, _today()))
    return JSONResponse({"imported": count})
