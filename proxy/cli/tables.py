"""The CLI's tables, from typed rows: every figure a table shows is formatted here.

A table is a list of ``Column``s, each a heading and how one row shows in it, over the reports'
own objects (``Totals``, ``TaskRow``, ``Spend`` …); ``render`` lays it out (``common.table``).
A row given as ``Given`` is shown as it is (a blank separator, a total the columns do not read).

How a figure is shown, the same in every table:

- paid dollars (``cost $``) and, beside them, never added, the API-equivalent dollars of seat
  traffic (``API-equiv $``, ``seat_note`` the legend); $/MTok over paid traffic only;
- dollars and $/MTok as the API writes them (``reports.totals.money``), ``?`` when unknown (no
  request of the row has a price) and ending in ``*`` when they cover the priced requests only;
  ``footnote`` gives the legend when a row is marked. ``-`` where there is nothing to divide;
- shares as percentages (``75.0%``), multiples (ROI) as ``1.20x``, token counts with thousands
  separators, amounts a person entered as written (``2400``, ``0.5``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from proxy.cli.common import table
from proxy.reports.totals import Totals, exact, money
from proxy.reports.window import Filters

R = TypeVar("R")
S = TypeVar("S")

UNKNOWN = "?"
PARTIAL = "*"
NONE = "-"
FOOTNOTE = (
    f"{PARTIAL} some requests have no known price: $ and $/MTok cover the priced ones only;"
    f" {UNKNOWN} no request has a price"
)


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    """A heading, and the text of one row's cell."""

    heading: str
    cell: Callable[[R], str]

    def of(self, part: Callable[[S], R]) -> Column[S]:
        """This column over rows that hold an ``R`` (``part`` picks it)."""
        cell = self.cell
        return Column(self.heading, lambda row: cell(part(row)))


@dataclass(frozen=True, slots=True)
class Given:
    """A row of cells as they are shown."""

    cells: tuple[str, ...]


def render(columns: Sequence[Column[R]], rows: Iterable[R | Given], left: int = 1) -> str:
    """The headings and one line per row, aligned; the first ``left`` columns flush left."""
    lines = [tuple(column.heading for column in columns)]
    for row in rows:
        if isinstance(row, Given):
            lines.append(row.cells)
        else:
            lines.append(tuple(column.cell(row) for column in columns))
    return table(lines, left)


def dollars(text: str | None, *, complete: bool = True, unknown: bool = False) -> str:
    """A dollar or $/MTok figure's text: ``?`` when ``unknown``, ``-`` when there is none, ``*``
    after it when it covers part of the requests (not ``complete``)."""
    if text is None:
        return UNKNOWN if unknown else NONE
    return text if complete else text + PARTIAL


def spent(totals: Totals, amount: Decimal | None, show: Callable[[Decimal], str] = money) -> str:
    """A dollar figure of ``totals`` (None: none) as ``show`` writes it, with the marks of
    its requests."""
    unknown = bool(totals.requests) and not totals.cost_known
    text = None if amount is None else show(amount)
    return dollars(text, complete=totals.cost_complete, unknown=unknown)


def footnote(marked: Iterable[bool]) -> str | None:
    """The legend of the marks, when any row is marked (covers part of its requests)."""
    return FOOTNOTE if any(marked) else None


def window_line(filters: Filters) -> str:
    """The window a report counted, above its table."""
    window = filters.window_json()
    return f"window {window['start'] or 'the beginning'} .. {window['end'] or 'now'}"


def share(ratio: Decimal | None, places: int = 1) -> str:
    return NONE if ratio is None else f"{ratio:.{places}%}"


def multiple(ratio: Decimal | None) -> str:
    return NONE if ratio is None else f"{ratio}x"


def count(number: int | None) -> str:
    return NONE if number is None else f"{number:,}"


def entered(amount: Decimal | None) -> str:
    """An amount a person entered (a task's value, hours, pay), as written."""
    return NONE if amount is None else exact(amount)


def number(value: Decimal | None) -> str:
    return NONE if value is None else str(value)


def _known(totals: Totals, amount: Decimal | None) -> Decimal | None:
    """``amount`` when the dollars of ``totals`` are known (some request has a price)."""
    return amount if totals.cost_known else None


# The columns of a slice's totals (usage, blended, a task's models), in the order shown.
REQUESTS: Column[Totals] = Column("requests", lambda t: str(t.requests))
TOKENS: Column[Totals] = Column("tokens", lambda t: count(t.total_tokens))
IN_OUT: Column[Totals] = Column("in:out", lambda t: number(t.input_output_ratio))
CACHE_HIT: Column[Totals] = Column("cache hit", lambda t: share(t.cache_hit_rate))
COST: Column[Totals] = Column("cost $", lambda t: spent(t, t.known_cost_usd))
# Beside the paid dollars, never added to them: what seat traffic would have cost on the API.
API_EQUIVALENT: Column[Totals] = Column(
    "API-equiv $",
    lambda t: money(t.api_equivalent_usd) if t.api_equivalent_requests else NONE,
)
STICKER: Column[Totals] = Column("sticker $", lambda t: spent(t, _known(t, t.sticker_usd)))
SAVED: Column[Totals] = Column("saved", lambda t: share(_known(t, t.cache_discount)))
PER_MTOK: Column[Totals] = Column("$/MTok", lambda t: spent(t, t.blended_usd_per_mtok))
STICKER_PER_MTOK: Column[Totals] = Column(
    "sticker $/MTok", lambda t: spent(t, t.sticker_usd_per_mtok)
)
USAGE = (REQUESTS, TOKENS, CACHE_HIT, COST, API_EQUIVALENT, STICKER, PER_MTOK)
BLENDED = (
    REQUESTS,
    TOKENS,
    IN_OUT,
    CACHE_HIT,
    COST,
    API_EQUIVALENT,
    STICKER,
    SAVED,
    PER_MTOK,
    STICKER_PER_MTOK,
)
SEAT_NOTE = (
    "API-equiv $: seat (subscription) traffic at list price; paid $0 per token, so it is not in"
    " cost $ and $/MTok covers paid traffic only"
)


def seat_note(rows: Iterable[Totals]) -> str | None:
    """The legend of the API-equivalent column, when any row has seat traffic."""
    return SEAT_NOTE if any(t.api_equivalent_requests for t in rows) else None


def keyed(heading: str, columns: Sequence[Column[Totals]]) -> list[Column[tuple[str, Totals]]]:
    """A name column (``heading``), then ``columns`` over (name, totals) rows."""
    return [Column(heading, lambda row: row[0]), *(c.of(_totals) for c in columns)]


def _totals(row: tuple[str, Totals]) -> Totals:
    return row[1]
