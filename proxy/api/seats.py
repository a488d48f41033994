"""Subscription seats: list, set one, import a CSV (all rows or none), and the seat report.

Like every ``/api/`` route these need the admin token (or loopback). A record or file refused is
422 with the reasons (``errors``). ``/reports/seats`` is the break-even per seat and month
(``proxy.reports.seats``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from proxy import reports, seats
from proxy.api.deps import CsvDep, EngineDep
from proxy.api.params import Amount, Name
from proxy.api.tabular import respond

router = APIRouter(tags=["seats"])


class SeatIn(BaseModel):
    """One person's seat: the plan's name and its price per month in USD."""

    model_config = ConfigDict(extra="forbid")

    plan: Name | None = None
    usd_per_month: Amount


@router.get("/seats", summary="Every subscription seat: plan and price per month")
async def list_seats(request: Request, engine: EngineDep) -> Response:
    data = [seat.as_json() for seat in (await seats.load_seats(engine)).values()]
    return respond(request, {"rows": data}, data, "seats")


@router.put("/seats/{user:path}", summary="Set (or replace) a person's seat")
async def put_seat(user: Name, body: SeatIn, engine: EngineDep) -> dict[str, Any]:
    seat = seats.check(seats.Seat(user, body.plan, body.usd_per_month, datetime.now(UTC)))
    await seats.save_seats(engine, [seat])
    return seat.as_json()


@router.post(
    "/seats/import",
    summary="Import a CSV user,usd_per_month,plan (text/csv body); the whole file or nothing",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_seats(engine: EngineDep, text: CsvDep) -> Response:
    count = await seats.save_seats(engine, seats.parse_csv(text, datetime.now(UTC)))
    return JSONResponse({"imported": count})


@router.get(
    "/reports/seats",
    summary="Per seat and month: API-equivalent value, seat price, value ÷ price, break-even",
)
async def get_seat_report(
    request: Request,
    engine: EngineDep,
    months: Annotated[int, Query(ge=1, le=reports.seats.MAX_MONTHS)] = 3,
) -> Response:
    report = await reports.seat_report(engine, months)
    return respond(request, report.as_json(), report.as_json()["rows"], "seats")
