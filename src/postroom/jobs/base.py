"""Work items and the port every dispatcher implements.

Our ``work_items`` table is the outbox: whatever the system must still do is a row, written in the same
transaction as the data it is about. A dispatcher only decides *when* a row is looked at; handlers re-load what
the row names and are safe to run twice, so delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Connection

from postroom.core.clock import utcnow
from postroom.core.slots import Slots
from postroom.db.engine import Database
from postroom.db.errors import database_unavailable, unavailable_reason
from postroom.jobs import queries

log = logging.getLogger("postroom.jobs")


class WorkKind(StrEnum):
    DELIVER = "deliver"
    RELEASE_SCHEDULED = "release_scheduled"
    VERIFY_DOMAIN = "verify_domain"
    WEBHOOK = "webhook"


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
    """What a handler decided: finished, or look again at ``retry_at``.

    ``record`` is written in the same transaction as the item's new status, so what the handler learned (a
    delivery, a bounce) and the item's outcome are committed together.
    """

    retry_at: datetime | None = None
    error: str | None = None
    record: Callable[[Connection], None] | None = None

    @classmethod
    def done(cls, record: Callable[[Connection], None] | None = None) -> WorkResult:
        return cls(record=record)

    @classmethod
    def retry(cls, at: datetime, error: str, record: Callable[[Connection], None] | None = None) -> WorkResult:
        return cls(retry_at=at, error=error, record=record)


Handler = Callable[[WorkItem], Awaitable[WorkResult]]


def enqueue(conn: Connection, *, kind: WorkKind, ref: str, run_at: datetime, now: datetime) -> int:
    """Add a work item inside the caller's transaction: it exists exactly when the data it is about exists.

    On PostgreSQL the pgqueuer job that wakes a worker for it is enqueued in the same transaction.
    """
    item_id = queries.insert_item(conn, kind=kind.value, ref=ref, run_at=run_at, now=now)
    if conn.dialect.name == "postgresql":
        from postroom.jobs.pgqueuer import enqueue_job

        enqueue_job(conn, kind=kind, item_id=item_id, attempt=0, run_at=run_at, now=now)
    return item_id


HANDLER_ERROR_BACKOFF = timedelta(seconds=30)
DATABASE_ERROR_BACKOFF = timedelta(seconds=1)
"""A handler that failed because the database was unavailable is tried again as soon as the database is back."""


class Backoff:
    """Capped exponential backoff with full jitter: each delay is random in ``[0, min(cap, first * 2**n)]``, so
    workers that lost the same database do not come back in step."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._failures = 0

    def next(self) -> float:
        ceiling = min(self._cap, self._first * 2 ** min(self._failures, 30))
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - spreading retries, not a secret

    def reset(self) -> None:
        self._failures = 0


class DispatcherGaveUp(Exception):
    """The dispatcher could not reach its database for longer than ``POSTROOM_WORKER_RECONNECT_TIMEOUT``."""


@dataclass(slots=True)
class DispatcherStatus:
    """What readiness and ``/metrics`` report about a dispatcher: whether it reaches its database (and since when
    it does not), and when it last claimed work."""

    connected: bool = False
    last_claim_at: datetime | None = None
    down_since: datetime | None = None
    last_error: str | None = None

    def up(self) -> None:
        self.connected = True
        self.down_since = None
        self.last_error = None

    def down(self, exc: BaseException | None) -> None:
        self.connected = False
        if self.down_since is None:
            self.down_since = utcnow()
        self.last_error = None if exc is None else (unavailable_reason(exc) or type(exc).__name__)

    def check_recovery(self, give_up_after: timedelta) -> None:
        """Raise ``DispatcherGaveUp`` once the database has been out of reach for longer than ``give_up_after``."""
        if self.down_since is not None and utcnow() - self.down_since > give_up_after:
            raise DispatcherGaveUp(
                f"no database connection since {self.down_since.isoformat()} ({self.last_error or 'unknown'})"
            )


def record_outcome(conn: Connection, *, item: WorkItem, token: str, result: WorkResult, now: datetime) -> bool:
    """Write a handler's outcome if ``token`` still holds the lease (False when it was lost to another worker).

    A retry on PostgreSQL also enqueues the pgqueuer job that will bring the item back at ``retry_at``.
    """
    if result.record is not None:
        # Recorded even when the lease was lost: outcomes only move a recipient forward, and forgetting a
        # delivery that happened would send it again.
        result.record(conn)
    kept = queries.finish(conn, item_id=item.id, token=token, now=now, error=result.error, retry_at=result.retry_at)
    if kept and result.retry_at is not None and conn.dialect.name == "postgresql":
        from postroom.jobs.pgqueuer import enqueue_job

        enqueue_job(conn, kind=item.kind, item_id=item.id, attempt=item.attempts, run_at=result.retry_at, now=now)
    return kept


def _record(conn: Connection, *, item: WorkItem, token: str, result: WorkResult) -> bool:
    return record_outcome(conn, item=item, token=token, result=result, now=utcnow())


async def execute(db: Database, handlers: Mapping[WorkKind, Handler], item: WorkItem, token: str) -> None:
    """Run a leased item's handler and record what happened; a handler that raises is retried later."""
    try:
        result = await handlers[item.kind](item)
    except Exception as exc:
        if database_unavailable(exc):
            log.warning("work item %s: database unavailable (%s); retrying", item.id, unavailable_reason(exc))
            backoff = DATABASE_ERROR_BACKOFF
        else:
            log.exception("work item %s (%s %s) failed", item.id, item.kind.value, item.ref)
            backoff = HANDLER_ERROR_BACKOFF
        result = WorkResult.retry(utcnow() + backoff, f"{type(exc).__name__}: {exc}"[:1000])
    retry = Backoff()
    while True:  # what a handler did (a delivery made) must be recorded, or it is done again after the lease
        try:
            kept = await db.write(partial(_record, item=item, token=token, result=result))
            break
        except Exception as exc:
            if not database_unavailable(exc):
                log.exception("could not record the outcome of work item %s; its lease will expire", item.id)
                return
            log.warning("work item %s: outcome not recorded yet, database unavailable; retrying", item.id)
            await asyncio.sleep(retry.next())
    if not kept:
        log.warning("work item %s: lease lost before its outcome was recorded", item.id)


def release_leases(conn: Connection, *, token: str, now: datetime) -> int:
    """Put back the items a stopping worker still holds, so others take them now rather than when leases expire.

    On PostgreSQL each released item gets a fresh pgqueuer job (the one it ran under was cancelled with it).
    """
    rows = queries.release(conn, token=token, now=now)
    if rows and conn.dialect.name == "postgresql":
        from postroom.jobs.pgqueuer import enqueue_job

        for row in rows:
            enqueue_job(conn, kind=WorkKind(row.kind), item_id=row.id, attempt=row.attempts, run_at=now, now=now)
    return len(rows)


async def finish_or_release(db: Database, running: set[asyncio.Task[Any]], token: str, timeout: float) -> int:
    """Graceful stop (REL-11): wait up to ``timeout`` s for in-flight items, cancel what is left, release leases.

    Returns how many items were released. An item cancelled mid-send may be sent again by another worker
    (with the same Message-ID); one that finished in time is recorded and never repeated.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while running and loop.time() < deadline:  # items that started meanwhile are waited for too
        await asyncio.wait(set(running), timeout=deadline - loop.time())
    pending = set(running)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    now = utcnow()
    try:
        released = await db.write(lambda conn: release_leases(conn, token=token, now=now))
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("could not release leases at shutdown (%s); they expire instead", unavailable_reason(exc))
        return 0
    if released:
        log.warning("released %d work item(s) still running at shutdown", released)
    return released


PARKED_PER_SLOT = 4
"""Work items a worker may hold while they wait outside its slots (for a busy destination), per slot."""


@dataclass(slots=True)
class _Holding:
    slots: Slots
    held: bool = True


_holding: ContextVar[_Holding | None] = ContextVar("postroom_worker_slot", default=None)


@contextlib.asynccontextmanager
async def worker_slot(slots: Slots, *, taken: bool = False) -> AsyncIterator[None]:
    """Hold one of the worker's slots while a work item runs (``taken``: the caller has already taken it)."""
    if not taken:
        await slots.acquire()
    holding = _Holding(slots)
    reset = _holding.set(holding)
    try:
        yield
    finally:
        _holding.reset(reset)
        if holding.held:
            slots.release()


@contextlib.asynccontextmanager
async def stepping_aside() -> AsyncIterator[None]:
    """Give the running item's worker slot to other work while it waits for something that is not work (its
    destination at its cap); afterwards it takes a slot back ahead of items that have not started. Outside a
    worker slot this does nothing."""
    holding = _holding.get()
    if holding is None or not holding.held:
        yield
        return
    holding.held = False
    holding.slots.release()
    try:
        yield
    finally:
        await holding.slots.acquire(first=True)
        holding.held = True


def work_item(row: Any) -> WorkItem:
    return WorkItem(id=row.id, kind=WorkKind(row.kind), ref=row.ref, attempts=row.attempts, created_at=row.created_at)


class Dispatcher(Protocol):
    status: DispatcherStatus

    def wake(self) -> None:
        """New work was committed in this process; look now rather than at the next poll."""

    async def run_forever(self) -> None:
        """Claim due work items and run their handlers until cancelled; a lost database is reconnected to with
        backoff, and ``DispatcherGaveUp`` raised once it stays away longer than the reconnect timeout."""

    async def shutdown(self, timeout: float) -> int:
        """Stop claiming, finish in-flight items within ``timeout`` s, release the rest; returns how many."""
