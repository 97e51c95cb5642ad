"""The PostgreSQL dispatcher: pgqueuer wakes workers, our outbox stays the truth (DESIGN §1, stack-notes §3).

Every outbox row gets a pgqueuer job in the transaction that writes the row (``enqueue_job``), so a worker on
any machine is woken by LISTEN/NOTIFY the moment the send commits. A job only says "look at work item N": the
worker leases the row (``claim_one``) and runs the same handlers as the embedded dispatcher; a job for a row that
is already done, or leased by a live worker, ends without doing anything. Retry ladders stay ours: a retry is a
new job with a later ``execute_after``. pgqueuer re-delivers a job whose worker stopped heartbeating; the
reconciler re-enqueues any due row that lost its job (dedupe keys ``<item>:<attempt>`` make that idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.core.qm import QueueManager
from sqlalchemy import Connection
from sqlalchemy.util import await_

from postroom.core.clock import utcnow
from postroom.core.slots import Slots
from postroom.db.engine import Database
from postroom.jobs import queries
from postroom.jobs.base import PARKED_PER_SLOT, Handler, WorkKind, execute, finish_or_release, work_item, worker_slot

log = logging.getLogger("postroom.jobs")

RECONCILE_INTERVAL = timedelta(minutes=1)
SHUTDOWN_GRACE_SECONDS = 30.0
POLL_INTERVAL = timedelta(seconds=1)
"""NOTIFY wakes a worker for new jobs; a job that becomes due later (a retry, a scheduled send) is polled for."""


def enqueue_job(
    conn: Connection, *, kind: WorkKind, item_id: int, attempt: int, run_at: datetime, now: datetime
) -> None:
    """Enqueue the pgqueuer job for an outbox row on the caller's connection, inside its transaction."""
    raw = conn.connection.driver_connection
    delay = max(run_at - now, timedelta(0))
    await_(
        Queries(AsyncpgDriver(raw)).enqueue(
            kind.value,
            str(item_id).encode(),
            execute_after=delay,
            dedupe_key=f"{item_id}:{attempt}",
            on_conflict="skip",
        )
    )


def reconcile(conn: Connection, *, now: datetime, limit: int = 1000) -> int:
    """Give every due outbox row without a live job a new one; returns how many rows were looked at."""
    rows = queries.stranded(conn, now=now, limit=limit)
    for row in rows:
        enqueue_job(conn, kind=WorkKind(row.kind), item_id=row.id, attempt=row.attempts, run_at=now, now=now)
    return len(rows)


class PgQueuerDispatcher:
    def __init__(
        self,
        db: Database,
        handlers: Mapping[WorkKind, Handler],
        *,
        dsn: str,
        concurrency: int = 16,
        lease: timedelta = timedelta(minutes=5),
        reconcile_interval: timedelta = RECONCILE_INTERVAL,
    ) -> None:
        self._db = db
        self._handlers = handlers
        self._dsn = dsn
        self._batch = max(1, concurrency // 2)
        self._concurrency = 2 * self._batch
        # pgqueuer runs up to ``_max_jobs`` jobs; our slots let ``_concurrency`` of them work at once, the rest
        # wait for a slot or for a busy destination outside the slots (``stepping_aside``).
        self._slots = Slots(self._concurrency)
        self._max_jobs = self._concurrency * (1 + PARKED_PER_SLOT)
        self._lease = lease
        self._reconcile_interval = reconcile_interval
        self._token = secrets.token_hex(8)
        self._running: set[asyncio.Task[Any]] = set()
        self._manager: QueueManager | None = None
        self._stopping = False
        self._closed = False

    def wake(self) -> None:
        """Nothing to do: the enqueue's NOTIFY wakes every worker."""

    async def run_forever(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        manager = self._manager = QueueManager(Queries(AsyncpgDriver(connection)))
        if self._stopping:
            manager.shutdown.set()
        for kind in self._handlers:
            manager.entrypoint(kind.value, accepts_context=False)(self._job)
        reconciler = asyncio.create_task(self._reconcile_forever())
        running = asyncio.create_task(
            manager.run(
                batch_size=self._batch,
                max_concurrent_tasks=self._max_jobs,
                dequeue_timeout=POLL_INTERVAL,
                heartbeat_timeout=timedelta(seconds=30),
            )
        )
        try:
            await asyncio.shield(running)
        finally:
            reconciler.cancel()
            manager.shutdown.set()  # stop taking jobs; jobs in flight finish and are recorded
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(running, SHUTDOWN_GRACE_SECONDS)
            await connection.close()

    async def shutdown(self, timeout: float) -> int:
        """Stop taking jobs, finish in-flight items within ``timeout`` s, cancel the rest and release their rows.

        Released rows get new jobs, so another worker picks them up at once instead of after the lease.
        """
        self._stopping = True
        if self._manager is not None:
            self._manager.shutdown.set()
        try:
            return await finish_or_release(self._db, self._running, self._token, timeout)
        finally:
            self._closed = True

    async def _job(self, job: Any) -> None:
        task = asyncio.current_task()
        if self._closed or task is None:
            return  # dequeued after the leases were released: the row stays queued for the reconciler
        self._running.add(task)
        try:
            await self._claim_and_run(int(job.payload.decode()))
        finally:
            self._running.discard(task)

    async def _claim_and_run(self, item_id: int) -> None:
        now = utcnow()
        token, lease_until = self._token, now + self._lease
        row = await self._db.write(
            lambda conn: queries.claim_one(conn, item_id=item_id, now=now, lease_until=lease_until, token=token)
        )
        if row is None:
            return  # done already, or a live worker holds it
        # Claimed before it waits for a slot: at shutdown its lease is released with a new job, so a successor
        # takes it at once.
        async with worker_slot(self._slots):
            await execute(self._db, self._handlers, work_item(row), token)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self._reconcile_interval.total_seconds())
            try:
                await self._db.write(lambda conn: reconcile(conn, now=utcnow()))
            except Exception:
                log.exception("reconciling the outbox failed; trying again at the next interval")
