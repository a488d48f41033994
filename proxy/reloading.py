"""Rows a Prometheus collector answers from at scrape time, loaded again when they grow old.

``Reloading`` is the part ``paymetrics.PayCollector`` and ``roimetrics.RoiCollector`` share:
the rows last loaded from the database, and ``due()`` saying when a scrape should load them
again (``max_age_s`` after the last attempt, failed ones included, so a database that is down
is not asked on every scrape). ``expire()`` makes the next scrape load them (a value was just
changed here). Whoever serves ``/metrics`` loads the rows; the collector never does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Generic, TypeVar

R = TypeVar("R")


class Reloading(Generic[R]):
    """The rows of ``set_rows`` and when to load them again (see module doc)."""

    def __init__(self, max_age_s: float) -> None:
        self._max_age_s = max_age_s
        self._rows: tuple[R, ...] = ()
        self._loaded_at = float("-inf")

    @property
    def rows(self) -> tuple[R, ...]:
        return self._rows

    def set_rows(self, rows: Iterable[R]) -> None:
        """Replace every row."""
        self._rows = tuple(rows)
        self.touch()

    def touch(self) -> None:
        """Count a load attempt (also a failed one) towards ``due``."""
        self._loaded_at = time.monotonic()

    def expire(self) -> None:
        """Load the rows again at the next scrape."""
        self._loaded_at = float("-inf")

    def due(self) -> bool:
        """True when the rows are older than ``max_age_s``: a scrape should load them again."""
        return time.monotonic() - self._loaded_at > self._max_age_s
