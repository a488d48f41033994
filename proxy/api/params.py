"""Parameter and field types shared by the routers: every client value bounded and validated.

- ``Moment``: an ISO 8601 date-time; one without an offset is taken as UTC (the store keeps only
  aware UTC times, and a report window must not depend on the server's local zone). One whose
  UTC time falls outside years 1-9999 is refused (422), never a 500.
- ``Name``: a user, team, model or task as recorded; ``Text``: a title (see ``proxy.text``).
  Both are documented in ``/openapi.json`` (length, no control characters); a NUL byte no longer
  reaches PostgreSQL, which cannot store it.
- ``Amount``: a non-negative decimal the money columns hold on both databases (``FIXED_MAX``,
  10 decimals). Send it as a JSON string for exactness: a JSON number is read as a float first.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from proxy.store.types import FIXED_MAX
from proxy.text import CONTROL_FREE, NAME_MAX_CHARS, TEXT_MAX_CHARS
from proxy.usage import as_utc

Moment = Annotated[datetime, AfterValidator(as_utc)]
Name = Annotated[str, StringConstraints(max_length=NAME_MAX_CHARS, pattern=CONTROL_FREE)]
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX_CHARS, pattern=CONTROL_FREE)]
Amount = Annotated[Decimal, Field(ge=0, le=FIXED_MAX, decimal_places=10)]
