"""``session_context``: where each agent session ran (working directory and git branch).

Written by ``tokenmeter backfill claude-code`` from the transcripts' ``cwd`` and ``gitBranch``,
one row per (session, cwd, branch) with the first and last response seen there and how many
responses; a second run over the same files writes the same rows. Usage events carry the
session, so a report can join on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.store.tables import session_context
from proxy.usage import as_utc


@dataclass(frozen=True, slots=True)
class SessionPlace:
    session: str
    cwd: str
    git_branch: str
    first_seen: datetime
    last_seen: datetime
    responses: int


async def save(engine: AsyncEngine, places: Sequence[SessionPlace], source: str) -> None:
    """Store ``places``: a row already there is replaced by the new counts (not added to)."""
    async with engine.begin() as conn:
        for place in places:
            key = (
                (session_context.c.session == place.session)
                & (session_context.c.cwd == place.cwd)
                & (session_context.c.git_branch == place.git_branch)
            )
            await conn.execute(sa.delete(session_context).where(key))
            await conn.execute(
                session_context.insert().values(
                    session=place.session,
                    cwd=place.cwd,
                    git_branch=place.git_branch,
                    first_seen=as_utc(place.first_seen),
                    last_seen=as_utc(place.last_seen),
                    responses=place.responses,
                    source=source,
                )
            )
