"""A fixed number of slots handed out first come, first served: a worker's slots for work items, and each
delivery destination's slots for SMTP sessions."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Slots:
    """``size`` slots; ``acquire`` waits in line (``first=True`` goes to the front), ``release`` hands the slot
    straight to the next in line. Unlike ``asyncio.Semaphore`` the order is guaranteed, and how many wait is
    known."""

    def __init__(self, size: int, *, on_release: Callable[[], None] | None = None) -> None:
        self.size = size
        self._taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_release = on_release

    @property
    def free(self) -> int:
        return self.size - self._taken

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def idle(self) -> bool:
        return self._taken == 0 and not self._waiters

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting for one."""
        if self._taken < self.size and not self._waiters:
            self._taken += 1
            return True
        return False

    async def acquire(self, *, first: bool = False) -> None:
        if self._taken < self.size and (first or not self._waiters):
            self._taken += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the wait was cancelled
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: still taken
                return
        self._taken -= 1
        if self._on_release is not None:
            self._on_release()
