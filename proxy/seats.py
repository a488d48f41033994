"""Subscription seats: who holds one, on which plan, at what price per month.

A seat is a claude.ai login (Pro, Max, Team, Enterprise) its holder's Claude Code traffic runs
on: billed per month, not per token (``proxy.billing``: such events are ``subscription`` with
$0 paid and their list price as ``api_equivalent_usd``). This module owns the ``seats`` table:
one row per person (the user id their traffic is attributed to), with a plan name for people
to read (``max-20x``) and the price per month in USD that the seat report divides by.

Contract:
- ``check`` refuses a record with a bad name, plan or price (``SeatError``, each field named);
- ``parse_csv`` validates a whole file (``user,usd_per_month[,plan]``) and returns every row or
  raises ``SeatImportError`` listing each problem with its line; ``save_seats`` writes rows in
  one transaction (a file is imported whole or not at all). Setting a seat again replaces it.

Errors: ``ValueError`` ← ``SeatError`` (one record), ``SeatImportError`` (a file).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import text
from proxy.store.rollup import dialect_insert
from proxy.store.tables import seats
from proxy.store.types import FIXED_MAX

COLUMNS = ("user", "usd_per_month", "plan")
_UNIT = Decimal("1e-10")


class SeatError(ValueError):
    """One seat record is invalid; the message says which field and why."""


class SeatImportError(ValueError):
    """A CSV file was refused; ``errors`` holds (line number, message) for each problem."""

    def __init__(self, errors: Sequence[tuple[int, str]]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  line {line}: {message}" for line, message in self.errors)
        super().__init__(f"nothing imported; {len(self.errors)} problem(s):\n{lines}")


@dataclass(frozen=True, slots=True)
class Seat:
    user: str
    plan: str | None
    usd_per_month: Decimal
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["usd_per_month"] = f"{self.usd_per_month.normalize():f}"
        data["updated_at"] = self.updated_at.isoformat()
        return data


def check(seat: Seat) -> Seat:
    """``seat`` if every field is acceptable, else ``SeatError`` naming each bad field."""
    found = []
    if not seat.user.strip():
        found.append("user must not be empty")
    for field, value in (("user", seat.user), ("plan", seat.plan)):
        if wrong := text.problem(value or ""):
            found.append(f"{field} {(value or '')[:40]!r} {wrong}")
    price = seat.usd_per_month
    if not price.is_finite() or price < 0:
        found.append(f"usd_per_month must be a non-negative number, got {price}")
    elif price > FIXED_MAX or price != price.quantize(_UNIT):
        found.append(f"usd_per_month {price} is too large or has more than 10 decimals")
    if found:
        raise SeatError("; ".join(found))
    return seat


def price(text_value: str) -> Decimal:
    """A price per month as written (``200``, ``25.50``); ``SeatError`` if it is not one."""
    try:
        return Decimal(text_value.strip())
    except InvalidOperation:
        raise SeatError(
            f"usd_per_month {text_value[:40]!r} is not a number (write 200 or 25.50)"
        ) from None


def parse_csv(content: str, now: datetime) -> list[Seat]:
    """Every row of a seats CSV (header ``user,usd_per_month,plan``; plan optional)."""
    reader = csv.DictReader(io.StringIO(content.removeprefix("\ufeff"), newline=""))
    found: dict[str, Seat] = {}
    errors: list[tuple[int, str]] = []
    try:
        names = [name.strip() for name in reader.fieldnames or ()]
        if "user" not in names or "usd_per_month" not in names:
            raise SeatImportError([(1, "expected a header line user,usd_per_month,plan")])
        for row in reader:
            line = reader.line_num
            cells = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                seat = check(
                    Seat(
                        cells["user"], cells.get("plan") or None, price(cells["usd_per_month"]), now
                    )
                )
            except SeatError as exc:
                errors.append((line, str(exc)))
                continue
            if seat.user in found:
                errors.append((line, f"duplicate user {seat.user!r}"))
            found[seat.user] = seat
    except csv.Error as exc:
        errors.append((reader.line_num + 1, f"not a valid CSV file: {exc}"))
    if errors:
        raise SeatImportError(errors[:50])
    if not found:
        raise SeatImportError([(1, "the file has a header but no rows")])
    return list(found.values())


async def save_seats(engine: AsyncEngine, rows: Sequence[Seat]) -> int:
    """Insert or replace each person's seat, all in one transaction."""
    if not rows:
        return 0
    async with engine.begin() as conn:
        insert = dialect_insert(conn, seats)
        replace = {n: insert.excluded[n] for n in ("plan", "usd_per_month", "updated_at")}
        upsert = insert.on_conflict_do_update(index_elements=["user"], set_=replace)
        await conn.execute(upsert, [asdict(seat) for seat in rows])
    return len(rows)


async def load_seats(engine: AsyncEngine) -> dict[str, Seat]:
    """Every seat, by user."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(seats).order_by(seats.c.user))).mappings().all()
    return {row["user"]: Seat(**row) for row in rows}
