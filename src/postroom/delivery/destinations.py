"""How many SMTP deliveries run at once to one destination: the most preferred MX host of the recipient domain
(domains sharing a mail host share its cap), or the relay when one is configured.

A delivery whose destination is at its cap waits in that destination's line, first come, first served, and
meanwhile gives its worker slot to other work (``jobs.base.stepping_aside``): one slow or tarpitting server holds
at most its cap of a worker's slots, and mail for every other destination keeps flowing. A line is bounded: when
``WAITING_PER_SLOT`` times the cap already wait, or a wait lasts a third of the work lease, the delivery is put
back in the queue for later (``DestinationBusy``) instead, so a waiting item never outlives its lease. The caps
are per process: N workers allow N times the cap to one destination.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from postroom.config import Settings
from postroom.core.slots import Slots
from postroom.jobs.base import stepping_aside

WAITING_PER_SLOT = 4


class DestinationBusy(Exception):
    """The destination is at its cap and its line is full (or did not move in time): try the delivery later."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        super().__init__(f"{destination}: at its concurrency cap, delivery postponed")


class Destinations:
    def __init__(self, settings: Settings) -> None:
        self._mx_cap = settings.destination_concurrency
        self._relay_cap = settings.relay_concurrency
        self._max_wait = settings.worker_lease_seconds / 3
        self._lines: dict[str, Slots] = {}

    @contextlib.asynccontextmanager
    async def slot(self, destination: str, *, relay: bool = False) -> AsyncIterator[None]:
        """Hold one of ``destination``'s slots; raises ``DestinationBusy`` when none comes in time."""
        cap = self._relay_cap if relay else self._mx_cap
        line = self._lines.get(destination)
        if line is None:
            line = self._lines[destination] = Slots(cap)
        try:
            if not line.try_acquire():
                if line.waiting >= WAITING_PER_SLOT * cap:
                    raise DestinationBusy(destination)
                async with stepping_aside():
                    try:
                        await asyncio.wait_for(line.acquire(), self._max_wait)
                    except TimeoutError:
                        raise DestinationBusy(destination) from None
        except BaseException:
            self._forget_if_idle(destination, line)
            raise
        try:
            yield
        finally:
            line.release()
            self._forget_if_idle(destination, line)

    def in_use(self, destination: str) -> int:
        """Slots of ``destination`` held now (for tests and metrics)."""
        line = self._lines.get(destination)
        return 0 if line is None else line.size - line.free

    def _forget_if_idle(self, destination: str, line: Slots) -> None:
        if line.idle and self._lines.get(destination) is line:
            del self._lines[destination]
