"""Column types that keep money exact and timestamps in UTC on both SQLite and PostgreSQL.

``Fixed`` is ``NUMERIC(20, 10)`` in the DDL of both databases. PostgreSQL stores it natively. SQLite
has no decimal type (its NUMERIC affinity silently turns ``0.0000030000`` into a float), so on
SQLite the value is stored as an integer count of 10⁻¹⁰ units: sums and ``x + excluded.x`` stay
exact in SQL, and the column type turns them back into ``Decimal`` when read. Consequence for
readers: always select money through the ``Table`` columns (``func.sum(col)`` keeps the type), and
do divisions in Python, never in SQL, so both databases give the same answer.

``UTCDateTime`` accepts only timezone-aware datetimes, stores UTC, and returns aware UTC
datetimes on both databases (SQLite would otherwise hand back naive ones).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, TypeDecorator
from sqlalchemy.types import TypeEngine

from proxy.usage import as_utc

SCALE = 10
PRECISION = 20
_UNIT = Decimal(1).scaleb(-SCALE)
# The largest value ``Fixed`` holds on both databases: SQLite's 64-bit integer of 10⁻¹⁰ units
# ($922,337,203.68...) is the tighter bound (NUMERIC(20, 10) would go to 10¹⁰ - 10⁻¹⁰).
FIXED_MAX = Decimal(2**63 - 1).scaleb(-SCALE)


def to_scaled(value: Decimal | int | None) -> int | None:
    """A decimal as an integer count of 10⁻¹⁰, rounded half away from zero like PostgreSQL."""
    if value is None:
        return None
    exact = value if isinstance(value, Decimal) else Decimal(value)
    scaled = exact.scaleb(SCALE)
    whole = int(scaled)
    if whole == scaled:  # the usual case: costs are already quantized to 10⁻¹⁰
        return whole
    return int(exact.quantize(_UNIT, rounding=ROUND_HALF_UP).scaleb(SCALE))


def from_scaled(value: int | float | str | None) -> Decimal | None:
    """The inverse of ``to_scaled``; also accepts text/floats written by other tools."""
    if value is None:
        return None
    if isinstance(value, int):
        return Decimal(value).scaleb(-SCALE)
    return Decimal(str(value)).quantize(_UNIT)


class _ScaledNumeric(Numeric[Decimal]):
    """SQLite's side of ``Fixed``: NUMERIC(20, 10) in DDL, integer 10⁻¹⁰ units in storage."""

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        return to_scaled

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        return from_scaled


class Fixed(TypeDecorator[Decimal]):
    """``NUMERIC(20, 10)`` that round-trips ``Decimal`` exactly on SQLite too (see module doc)."""

    impl = Numeric(PRECISION, SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return _ScaledNumeric(PRECISION, SCALE, asdecimal=True)
        return dialect.type_descriptor(Numeric(PRECISION, SCALE, asdecimal=True))


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; aware datetimes in, aware UTC datetimes out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: tokenmeter stores only aware UTC times")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)
