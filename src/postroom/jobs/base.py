"""Work items and the port every dispatcher implements (DESIGN §1).

Our ``work_items`` table is the outbox: whatever the system must still do is a row, written in the same
transaction as the data it is about. A dispatcher only decides *when* a row is looked at; handlers re-load what
the row names and are safe to run twice, so delivery is at-least-once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import Connection

from postroom.jobs import queries


class WorkKind(StrEnum):
    DELIVER = "deliver"
    RELEASE_SCHEDULED = "release_scheduled"


@dataclass(frozen=True, slots=True)
class WorkItem:
    id: int
    kind: WorkKind
    ref: str
    attempts: int
    """Including this one."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkResult:
    """What a handler decided: finished, or look again at ``retry_at``."""

    retry_at: datetime | None = None
    error: str | None = None

    @classmethod
    def done(cls) -> WorkResult:
        return cls()

    @classmethod
    def retry(cls, at: datetime, error: str) -> WorkResult:
        return cls(retry_at=at, error=error)


Handler = Callable[[WorkItem], Awaitable[WorkResult]]


def enqueue(conn: Connection, *, kind: WorkKind, ref: str, run_at: datetime, now: datetime) -> int:
    """Add a work item inside the caller's transaction: it exists exactly when the data it is about exists."""
    return queries.insert_item(conn, kind=kind.value, ref=ref, run_at=run_at, now=now)


class Dispatcher(Protocol):
    def wake(self) -> None:
        """New work was committed in this process; look now rather than at the next poll."""

    async def run_forever(self) -> None:
        """Claim due work items and run their handlers until cancelled."""
