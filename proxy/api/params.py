"""Query parameter types shared by the routers.

``Moment``: an ISO 8601 date-time; one without an offset is taken as UTC (the store keeps only
aware UTC times, and a report window must not depend on the server's local zone).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Moment = Annotated[datetime, AfterValidator(as_utc)]
