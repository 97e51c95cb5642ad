"""What readiness and ``/metrics`` say about the dispatcher of a process that runs one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from postroom.core.clock import utcnow
from postroom.db.engine import Database
from postroom.jobs import queries
from postroom.jobs.base import Dispatcher

BACKLOG_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class DispatcherReport:
    connected: bool
    last_claim_at: datetime | None
    down_since: datetime | None
    last_error: str | None
    backlog: int | None
    """Queued work items that are due now; None when the database could not be asked."""
    oldest_due_age_seconds: float | None
    """How long the oldest of them has been due (0 when none is); None when the database could not be asked."""


async def report(db: Database, dispatcher: Dispatcher) -> DispatcherReport:
    status = dispatcher.status
    now = utcnow()
    backlog: int | None = None
    age: float | None = None
    try:
        backlog, oldest = await asyncio.wait_for(
            db.read(lambda conn: queries.backlog(conn, now=now)), BACKLOG_TIMEOUT_SECONDS
        )
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    except Exception:  # noqa: S110 - a database that does not answer is reported as unknown, never an error
        pass
    return DispatcherReport(
        connected=status.connected,
        last_claim_at=status.last_claim_at,
        down_since=status.down_since,
        last_error=status.last_error,
        backlog=backlog,
        oldest_due_age_seconds=age,
    )
