"""Slots hand out in arrival order, let a returning holder go first, and survive cancelled waits; a work item that
steps aside gives its worker slot to the next item and gets one back before items that have not started."""

from __future__ import annotations

import asyncio

from postroom.core.slots import Slots
from postroom.jobs.base import stepping_aside, worker_slot


def test_slots_go_in_arrival_order_and_first_jumps_the_line() -> None:
    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        await slots.acquire()

        async def take(name: str, first: bool = False) -> None:
            await slots.acquire(first=first)
            order.append(name)
            slots.release()

        waiting = [asyncio.create_task(take(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(take("returning", first=True)))
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*waiting)
        assert slots.idle
        return order

    assert asyncio.run(scenario()) == ["returning", "a", "b", "c"]


def test_a_cancelled_wait_gives_up_its_place_and_loses_no_slot() -> None:
    async def scenario() -> tuple[int, int]:
        slots = Slots(1)
        await slots.acquire()
        cancelled = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        waiting_after_cancel = slots.waiting
        slots.release()
        return waiting_after_cancel, slots.free

    assert asyncio.run(scenario()) == (0, 1)


def test_stepping_aside_lends_the_worker_slot_and_takes_it_back_first() -> None:
    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        destination = asyncio.Event()

        async def slow_item() -> None:
            async with worker_slot(slots):
                order.append("slow starts")
                async with stepping_aside():
                    await destination.wait()  # its destination is busy
                order.append("slow resumes")

        async def other_item(name: str) -> None:
            async with worker_slot(slots):
                order.append(name)
                if name == "other-1":
                    destination.set()  # frees the destination while it holds the only slot
                    await asyncio.sleep(0.01)

        slow = asyncio.create_task(slow_item())
        await asyncio.sleep(0)
        others = [asyncio.create_task(other_item(f"other-{i}")) for i in (1, 2)]
        await asyncio.gather(slow, *others)
        assert slots.free == 1
        return order

    assert asyncio.run(scenario()) == ["slow starts", "other-1", "slow resumes", "other-2"]
