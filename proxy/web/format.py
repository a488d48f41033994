"""Numbers as the pages print them: money with thousands separators, tokens, ratios.

The exact figure (the API's decimal string) rides along in each cell's ``data-exact``
attribute; what a person reads is rounded here, in one place.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

UNKNOWN = "unknown"
_CENT = Decimal("0.01")
_SUBCENT = Decimal("0.0001")


def usd(value: Decimal | str | None) -> str:
    """``$1,234.57``; amounts under a dollar keep four decimals (``$0.0123``)."""
    if value is None:
        return UNKNOWN
    amount = Decimal(value)
    places = _SUBCENT if amount and abs(amount) < 1 else _CENT
    return f"${amount.quantize(places, rounding=ROUND_HALF_EVEN):,}"


def per_mtok(value: Decimal | str | None) -> str:
    return "—" if value is None else f"{usd(value)}/MTok"


def count(value: int | str | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def percent(value: Decimal | str | None) -> str:
    """A share (``0.8123``) as ``81.2%``."""
    if value is None:
        return "—"
    return f"{(Decimal(value) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}%"


def multiple(value: Decimal | str | None) -> str:
    """A ratio such as ROI or input:output as ``12.5×`` (whole from 100 on: ``139,018×``)."""
    if value is None:
        return "—"
    amount = Decimal(value)
    places = Decimal(1) if abs(amount) >= 100 else _CENT
    return f"{amount.quantize(places, rounding=ROUND_HALF_EVEN).normalize():,f}×"
