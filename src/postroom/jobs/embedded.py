"""The in-process dispatcher: one asyncio task that leases due work items and runs their handlers.

It runs inside ``postroom serve`` (woken by the API after a commit) and as ``postroom worker``. Claims go through
the database (``jobs.queries.claim``), so several workers on one PostgreSQL never run the same item at once, and
an item whose worker died is taken again once its lease runs out. A handler that raises is retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta

from postroom.core.clock import utcnow
from postroom.core.slots import Slots
from postroom.db.engine import Database
from postroom.jobs import queries
from postroom.jobs.base import (
    PARKED_PER_SLOT,
    Backoff,
    DispatcherStatus,
    Handler,
    WorkItem,
    WorkKind,
    execute,
    finish_or_release,
    work_item,
    worker_slot,
)

log = logging.getLogger("postroom.jobs")

LEASE = timedelta(minutes=5)
IDLE_POLL_SECONDS = 1.0


class EmbeddedDispatcher:
    def __init__(
        self,
        db: Database,
        handlers: Mapping[WorkKind, Handler],
        *,
        concurrency: int = 16,
        lease: timedelta = LEASE,
        give_up_after: timedelta = timedelta(minutes=5),
    ) -> None:
        self._db = db
        self._give_up_after = give_up_after
        self.status = DispatcherStatus()
        self._handlers = handlers
        self._concurrency = concurrency
        # Items that wait for a busy destination give their slot to others (``stepping_aside``), so more items
        # than slots may be claimed at once, up to this many.
        self._slots = Slots(concurrency, on_release=self.wake)
        self._max_claimed = concurrency * (1 + PARKED_PER_SLOT)
        self._lease = lease
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._token = secrets.token_hex(8)
        self._stopping = False
        self._started = False
        self._loop_done = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        self._started = True
        backoff = Backoff()
        try:
            while not self._stopping:
                try:
                    claimed = await self._claim()
                except Exception as exc:  # the database is unavailable (or full): try again, then give up
                    self.status.down(exc)
                    log.warning("claiming work items failed (%s); trying again", self.status.last_error)
                    self.status.check_recovery(self._give_up_after)
                    await asyncio.sleep(backoff.next())  # not cut short by wake-ups: sends keep coming
                    continue
                self.status.up()
                backoff.reset()
                if self._stopping:
                    break  # claimed just as shutdown began: shutdown() releases them unrun
                if not claimed:
                    await self._idle(IDLE_POLL_SECONDS)
                    continue
                self.status.last_claim_at = utcnow()
                for item in claimed:
                    task = asyncio.create_task(self._run(item, taken=self._slots.try_acquire()))
                    self._running.add(task)
                    task.add_done_callback(self._finished)
                if self._room() <= 0:
                    self._wake.clear()
                    await self._wake.wait()  # set when a slot frees up, or by shutdown()
        except asyncio.CancelledError:
            await self.stop()
            raise
        finally:
            self._loop_done.set()

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds``, or less if woken (new work, a free slot, shutdown)."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def shutdown(self, timeout: float) -> int:
        """Stop claiming, finish in-flight items within ``timeout`` s, then release whatever is still leased."""
        self._stopping = True
        self._wake.set()
        if self._started:
            await self._loop_done.wait()  # no claim can commit after the release below
        return await finish_or_release(self._db, self._running, self._token, timeout)

    async def stop(self) -> None:
        """Let running handlers finish (their outcomes are recorded), then return."""
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    def _room(self) -> int:
        return min(self._slots.free, self._max_claimed - len(self._running))

    async def _claim(self) -> list[WorkItem]:
        room = self._room()
        if room <= 0 or self._stopping:
            return []
        now = utcnow()
        rows = await self._db.write(
            lambda conn: queries.claim(conn, now=now, limit=room, lease_until=now + self._lease, token=self._token)
        )
        return [work_item(r) for r in rows]

    async def _run(self, item: WorkItem, *, taken: bool) -> None:
        async with worker_slot(self._slots, taken=taken):
            await execute(self._db, self._handlers, item, self._token)
