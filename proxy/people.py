"""People and their compensation: validation, CSV import, storage, and the USD view of it.

Contract:
- A ``Person`` is one row of ``people``: a user id as the proxy sees it, a name, a team, an annual
  compensation in an ISO 4217 currency, effective from a date. A raise is a new row with a later
  ``effective_from``; history is never rewritten. ``in_effect`` picks each user's row on a day.
- ``parse_csv`` validates a whole file and either returns every row or raises
  ``PeopleImportError`` listing each problem with its line number; ``save_people`` writes rows in
  one transaction. An import therefore writes all of a file or nothing.
- ``to_usd`` converts with the company's own rates (``TOKENMETER_USD_PER_CURRENCY``) and raises
  ``ConversionError`` when a currency has none: tokenmeter does not invent exchange rates.

Errors: ``ValueError`` ← ``PeopleImportError`` (a file), ``PersonError`` (one record),
``ConversionError`` (no rate for a currency).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import text
from proxy.currencies import is_currency
from proxy.store.rollup import dialect_insert
from proxy.store.tables import people
from proxy.store.types import FIXED_MAX

log = logging.getLogger("tokenmeter.people")

REQUIRED = ("user", "team", "annual_compensation", "currency")
OPTIONAL = ("name", "effective_from")
MAX_REPORTED_ERRORS = 50
_UNIT = Decimal("1e-10")  # NUMERIC(20, 10): ten digits after the point


class PersonError(ValueError):
    """One person record is invalid; the message says which field and why."""


class PeopleImportError(ValueError):
    """A CSV file was refused; ``errors`` holds (line number, message) for each problem."""

    def __init__(self, errors: Sequence[tuple[int, str]]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  line {line}: {message}" for line, message in self.errors)
        super().__init__(f"nothing imported; {len(self.errors)} problem(s):\n{lines}")


class ConversionError(ValueError):
    """Compensation in a currency without a configured USD rate cannot be compared to spend."""


@dataclass(frozen=True, slots=True)
class Person:
    user: str
    effective_from: date
    name: str | None
    team: str | None
    annual_compensation: Decimal
    currency: str

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["effective_from"] = self.effective_from.isoformat()
        data["annual_compensation"] = f"{self.annual_compensation.normalize():f}"
        return data


def check(person: Person) -> Person:
    """``person`` if every field is acceptable, else ``PersonError`` naming each bad field."""
    if found := problems(person):
        raise PersonError("; ".join(found))
    return person


def problems(person: Person) -> list[str]:
    """What is wrong with ``person``, one message per field ([] when nothing is)."""
    found = []
    if not person.user.strip():
        found.append("user must not be empty")
    for field, value in (("user", person.user), ("team", person.team), ("name", person.name)):
        if wrong := text.problem(value or ""):
            found.append(f"{field} {(value or '')[:40]!r} {wrong}")
    if not is_currency(person.currency):
        found.append(f"unknown currency {person.currency!r} (expected an ISO 4217 code)")
    amount = person.annual_compensation
    if not amount.is_finite() or amount < 0:
        found.append(f"annual_compensation must be a non-negative number, got {amount}")
    elif amount > FIXED_MAX:
        found.append(f"annual_compensation {amount} is too large (at most {FIXED_MAX})")
    elif amount != amount.quantize(_UNIT):
        found.append(f"annual_compensation {amount} has more than 10 decimals")
    return found


def parse_csv(content: str, today: date) -> list[Person]:
    """Every row of a people CSV, validated; ``PeopleImportError`` if any row is wrong.

    Columns: user, team, annual_compensation, currency (required); name, effective_from
    (optional; a blank or absent ``effective_from`` means ``today``). One row per (user,
    effective_from)."""
    # newline="": the csv module's own line handling (quoted newlines, \r\n, a lone \r)
    reader = csv.DictReader(io.StringIO(content.removeprefix("\ufeff"), newline=""))
    found: list[Person] = []
    errors: list[tuple[int, str]] = []
    first_line: dict[tuple[str, date], int] = {}
    for line, row in _records(reader):
        person, wrong = _person(row, today)
        errors += [(line, message) for message in wrong]
        if person is None:
            continue
        key = (person.user, person.effective_from)
        if key in first_line:
            errors.append(
                (
                    line,
                    f"duplicate user {person.user!r} effective {key[1]} "
                    f"(first on line {first_line[key]})",
                )
            )
            continue
        first_line[key] = line
        found.append(person)
    if errors:
        raise PeopleImportError(errors[:MAX_REPORTED_ERRORS])
    if not found:
        raise PeopleImportError([(1, "the file has a header but no rows")])
    return found


def _records(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str | Any, str | Any]]]:
    """(line number, row) for each row after a valid header; ``PeopleImportError`` for a bad
    header or a file the csv module cannot read (a field over its size limit, ...)."""
    try:
        header_errors = _header_errors(reader.fieldnames)
        if header_errors:
            raise PeopleImportError([(1, message) for message in header_errors])
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        line = reader.line_num + 1  # the line it was reading
        raise PeopleImportError([(line, f"not a valid CSV file: {exc}")]) from None


def _header_errors(fieldnames: Sequence[str] | None) -> list[str]:
    if not fieldnames:
        return ["empty file: expected a header line " + ",".join(REQUIRED + OPTIONAL)]
    names = [name.strip() for name in fieldnames]
    missing = [name for name in REQUIRED if name not in names]
    unknown = [name for name in names if name not in REQUIRED + OPTIONAL]
    errors = [f"missing column {name!r}" for name in missing]
    errors += [
        f"unknown column {name!r} (known: {', '.join(REQUIRED + OPTIONAL)})" for name in unknown
    ]
    return errors


def _person(row: Mapping[str | Any, str | Any], today: date) -> tuple[Person | None, list[str]]:
    """The person on one CSV row, or None with every problem the row has."""
    cells = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
    if None in row:
        return None, ["more cells than columns"]
    wrong: list[str] = []
    amount = _parsed(wrong, _number, cells["annual_compensation"])
    person = Person(
        user=cells["user"],
        effective_from=today,
        name=cells.get("name") or None,
        team=cells["team"] or None,
        annual_compensation=Decimal(0) if amount is None else amount,
        currency=cells["currency"].upper(),
    )
    wrong += problems(person)
    effective_from = _parsed(wrong, _date, cells.get("effective_from", ""), today)
    person = replace(person, effective_from=effective_from or today)
    return (None if wrong else person), wrong


def _parsed(wrong: list[str], parse: Callable[..., Any], *args: Any) -> Any:
    try:
        return parse(*args)
    except PersonError as exc:
        wrong.append(str(exc))
        return None


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise PersonError(
            f"annual_compensation {text!r} is not a number (write 120000 or 120000.50, "
            "no thousands separators or currency signs)"
        ) from None
    return value


def _date(text: str, today: date) -> date:
    if not text:
        return today
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PersonError(f"effective_from {text!r} is not a date (YYYY-MM-DD)") from None


async def save_people(engine: AsyncEngine, rows: Sequence[Person]) -> int:
    """Insert or replace each (user, effective_from) row, all in one transaction."""
    if not rows:
        return 0
    values = [asdict(person) for person in rows]
    async with engine.begin() as conn:
        insert = dialect_insert(conn, people)
        replace = {
            n: insert.excluded[n] for n in ("name", "team", "annual_compensation", "currency")
        }
        await conn.execute(
            insert.on_conflict_do_update(index_elements=["user", "effective_from"], set_=replace),
            values,
        )
    return len(values)


async def load_people(engine: AsyncEngine) -> list[Person]:
    """Every row of ``people`` (the whole history), by user then date."""
    query = sa.select(people).order_by(people.c.user, people.c.effective_from)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [Person(**row) for row in rows]


def in_effect(history: Iterable[Person], on: date) -> dict[str, Person]:
    """Each user's row in effect on ``on`` (the latest ``effective_from`` not after it)."""
    current: dict[str, Person] = {}
    for person in history:
        if person.effective_from > on:
            continue
        held = current.get(person.user)
        if held is None or person.effective_from > held.effective_from:
            current[person.user] = person
    return current


def to_usd(person: Person, usd_per: Mapping[str, Decimal]) -> Decimal:
    """``person``'s annual compensation in USD, or ``ConversionError``."""
    if person.currency == "USD":
        return person.annual_compensation
    rate = usd_per.get(person.currency)
    if rate is None:
        raise ConversionError(missing_rate_message({person.currency: [person.user]}))
    return person.annual_compensation * rate


def missing_rate_message(users_by_currency: Mapping[str, Sequence[str]]) -> str:
    """The error shown when compensation cannot be compared with USD spend."""
    parts = [
        f"{cur} ({', '.join(sorted(users))})" for cur, users in sorted(users_by_currency.items())
    ]
    example = ", ".join(f'"{cur}": "<USD per {cur}>"' for cur in sorted(users_by_currency))
    return (
        f"compensation in {'; '.join(parts)} cannot be compared with USD spend: set "
        f"TOKENMETER_USD_PER_CURRENCY='{{{example}}}' (tokenmeter does not guess exchange rates)"
    )


class CompensationGauge(Protocol):
    """What ``refresh_gauge`` needs from ``proxy.metrics.Metrics``."""

    def set_compensation(self, rows: Iterable[tuple[str, str, Decimal]]) -> None: ...


def gauge_rows(
    history: Iterable[Person], today: date, usd_per: Mapping[str, Decimal]
) -> list[tuple[str, str, Decimal]]:
    """(user, team, USD) for everyone in effect ``today`` whose currency converts; others are
    left out of the gauge (the compensation report names them)."""
    rows = []
    for person in in_effect(history, today).values():
        try:
            rows.append((person.user, person.team or "", to_usd(person, usd_per)))
        except ConversionError:
            continue
    return sorted(rows)


async def refresh_gauge(
    engine: AsyncEngine, gauge: CompensationGauge, usd_per: Mapping[str, Decimal], today: date
) -> None:
    """Set the pay series of ``/metrics`` from the people table (after each write)."""
    gauge.set_compensation(gauge_rows(await load_people(engine), today, usd_per))


async def refresh_gauge_quietly(
    engine: AsyncEngine,
    gauge: CompensationGauge,
    usd_per: Mapping[str, Decimal],
    timeout_s: float = 2.0,
) -> bool:
    """``refresh_gauge`` for today that never raises and never waits more than ``timeout_s``
    (at start, and before a scrape): a database that is away or hanging leaves the last rows
    in place and costs a scrape two seconds at most. False when the rows were not refreshed."""
    try:
        today = datetime.now(UTC).date()
        await asyncio.wait_for(refresh_gauge(engine, gauge, usd_per, today), timeout_s)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("compensation for /metrics not refreshed: %r", exc)
        return False
    return True
