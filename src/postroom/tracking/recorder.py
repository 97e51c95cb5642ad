"""Writing tracking events: each before its answer (the default), or behind it, many to a transaction.

With ``POSTROOM_TRACKING_WRITE_BEHIND=1`` a request's unit of work is queued and the answer goes out at once; a
flush a few milliseconds later runs every queued unit in one transaction (up to ``BATCH`` each), so a burst of
clicks costs one commit instead of one per click. While ``MAX_PENDING`` units wait, a request writes its own and
waits for the commit again. ``close`` (at shutdown) writes what is queued. A batch whose transaction fails is
logged and lost, as is what is queued when the process dies: that is the trade the setting makes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from postroom.db.engine import Database

log = logging.getLogger("postroom.tracking")

Unit = Callable[[Connection], Any]

FLUSH_DELAY = 0.005
"""Seconds a flush waits for more events to join it."""
BATCH = 500
MAX_PENDING = 5000


def _all_of(batch: list[Unit]) -> Unit:
    return lambda conn: [unit(conn) for unit in batch]


class EventRecorder:
    def __init__(self, db: Database, *, write_behind: bool) -> None:
        self._db = db
        self._write_behind = write_behind
        self._pending: list[Unit] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, unit: Unit) -> None:
        """Write ``unit``: committed on return, or (write-behind) queued for the next flush."""
        if not self._write_behind or len(self._pending) >= MAX_PENDING:
            await self._db.write(unit)
            return
        self._pending.append(unit)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush(FLUSH_DELAY))

    async def _flush(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                await self._db.write(_all_of(batch))
            except Exception:
                log.exception("%d tracking events could not be written", len(batch))

    async def drain(self) -> None:
        """Write everything queued (at shutdown, and for benchmarks and tests)."""
        if self._flushing is not None:
            await self._flushing
        await self._flush(0)

    close = drain
