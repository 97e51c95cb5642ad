"""The PostgreSQL dispatcher: pgqueuer wakes workers, our outbox stays the truth.

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
from functools import partial
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
from postroom.db.errors import database_unavailable
from postroom.jobs import queries
from postroom.jobs.base import (
    PARKED_PER_SLOT,
    Backoff,
    DispatcherStatus,
    Handler,
    WorkKind,
    execute,
    finish_or_release,
    work_item,
    worker_slot,
)

log = logging.getLogger("postroom.jobs")

RECONCILE_INTERVAL = timedelta(minutes=1)
SHUTDOWN_GRACE_SECONDS = 30.0
CLAIM_ATTEMPTS = 8
"""Tries at claiming a job's work item while the database is unavailable (about 20 s with the backoff)."""
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


async def release_picked(connection: asyncpg.Connection, table: str, queue_manager_id: Any) -> None:
    """Make the jobs a lost queue manager had picked look abandoned, so the next dequeue takes them at once rather
    than once their heartbeat is ``heartbeat_timeout`` old. A job whose item is in fact still running here finds
    the item leased by this worker and ends without doing anything."""
    await connection.execute(
        f"UPDATE {table} SET heartbeat = NOW() - interval '1 day' "  # noqa: S608 - pgqueuer's own table name
        "WHERE status = 'picked' AND queue_manager_id = $1",
        queue_manager_id,
    )


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
        connect_timeout: float = 1.5,
        give_up_after: timedelta = timedelta(minutes=5),
    ) -> None:
        self._db = db
        self._connect_timeout = connect_timeout
        self._give_up_after = give_up_after
        self.status = DispatcherStatus()
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
        """Run pgqueuer on a connection of its own; when any connection is lost (the listener's included), connect
        again with backoff and carry on, the reconciler running throughout."""
        reconciler = asyncio.create_task(self._reconcile_forever())
        backoff = Backoff()
        try:
            while not self._stopping:
                try:
                    await self._run_connected(backoff)
                except Exception as exc:
                    if self._stopping:
                        break
                    self.status.down(exc)
                    log.warning("job queue lost its database connection (%s); reconnecting", self.status.last_error)
                else:
                    if self._stopping:
                        break
                    self.status.down(None)
                self.status.check_recovery(self._give_up_after)
                await asyncio.sleep(backoff.next())
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler

    async def _run_connected(self, backoff: Backoff) -> None:
        """One connection's life: connect, reconcile, run pgqueuer until shutdown or until the connection is lost."""
        connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        manager: QueueManager | None = None
        running: asyncio.Task[None] | None = None
        try:
            previous = self._manager
            queries_ = Queries(AsyncpgDriver(connection))
            if previous is not None:  # the jobs the lost connection had picked are taken again now
                await release_picked(connection, queries_.qbe.settings.queue_table, previous.queue_manager_id)
            manager = self._manager = QueueManager(queries_)
            if self._stopping:
                manager.shutdown.set()
            for kind in self._handlers:
                manager.entrypoint(kind.value, accepts_context=False)(self._job)
            # Rows whose job was consumed while the database was away get a new one now, not at the next interval.
            await self._db.write(lambda conn: reconcile(conn, now=utcnow()))
            self.status.up()
            backoff.reset()
            running = asyncio.create_task(
                manager.run(
                    batch_size=self._batch,
                    max_concurrent_tasks=self._max_jobs,
                    dequeue_timeout=POLL_INTERVAL,
                    heartbeat_timeout=timedelta(seconds=30),
                )
            )
            watch = asyncio.create_task(lost.wait())
            try:
                await asyncio.wait({running, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
            if running.done():
                running.result()  # raises what ended it; returns after a shutdown
            else:
                raise ConnectionResetError("the job queue's connection was closed")
        finally:
            if manager is not None and running is not None:
                manager.shutdown.set()  # stop taking jobs
                # On shutdown, jobs in flight finish and are recorded; on a lost connection our own tasks carry
                # the work items on (``_job``), so pgqueuer's loop is not waited for.
                grace = SHUTDOWN_GRACE_SECONDS if self._stopping else 1.0
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(running, grace)
            if lost.is_set():
                connection.terminate()
            else:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), self._connect_timeout)
                if not connection.is_closed():
                    connection.terminate()

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
        if self._closed:
            return  # dequeued after the leases were released: the row stays queued for the reconciler
        # The work item runs in a task of ours: if pgqueuer's loop ends (its connection lost), the delivery goes on
        # and its outcome is recorded, instead of the row waiting out its lease.
        task = asyncio.create_task(self._claim_and_run(int(job.payload.decode())))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        await asyncio.shield(task)

    async def _claim_and_run(self, item_id: int) -> None:
        retry = Backoff()
        for attempt in range(CLAIM_ATTEMPTS):
            now = utcnow()
            try:
                row = await self._db.write(partial(self._claim, item_id=item_id, now=now))
                break
            except Exception as exc:
                # A pool whose connections died answers the first use with an error and reconnects for the next:
                # the job stays ours rather than waiting for the reconciler.
                if attempt == CLAIM_ATTEMPTS - 1 or not database_unavailable(exc):
                    raise
                await asyncio.sleep(retry.next())
        if row is None:
            return  # done already, or a live worker holds it
        self.status.last_claim_at = now
        # Claimed before it waits for a slot: at shutdown its lease is released with a new job, so a successor
        # takes it at once.
        async with worker_slot(self._slots):
            await execute(self._db, self._handlers, work_item(row), self._token)

    def _claim(self, conn: Connection, *, item_id: int, now: datetime) -> Any:
        return queries.claim_one(conn, item_id=item_id, now=now, lease_until=now + self._lease, token=self._token)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self._reconcile_interval.total_seconds())
            try:
                await self._db.write(lambda conn: reconcile(conn, now=utcnow()))
            except Exception:
                log.exception("reconciling the outbox failed; trying again at the next interval")
