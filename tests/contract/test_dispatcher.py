"""The outbox dispatcher contract, on both adapters (embedded on SQLite, pgqueuer on PostgreSQL): due items run once, retries wait for their time, a lost lease is
taken over, and two workers never run one item at the same time."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from sqlalchemy import Connection, select, update

from postroom.core.clock import utcnow
from postroom.jobs.base import Dispatcher, Handler, WorkItem, WorkKind, WorkResult, enqueue
from postroom.jobs.registry import make_dispatcher
from postroom.models import work_items
from tests.conftest import Backend


def dispatcher(backend: Backend, handler: Handler, *, concurrency: int = 16) -> Dispatcher:
    settings = dataclasses.replace(backend.settings, worker_concurrency=concurrency, worker_lease_seconds=300)
    return make_dispatcher(backend.db, settings, {WorkKind.DELIVER: handler})


def _enqueue(backend: Backend, ref: str, delay: timedelta = timedelta(0)) -> int:
    now = utcnow()
    return backend.write(lambda conn: enqueue(conn, kind=WorkKind.DELIVER, ref=ref, run_at=now + delay, now=now))


def _status(backend: Backend, item_id: int) -> tuple[str, int]:
    row = backend.read(lambda conn: conn.execute(select(work_items).where(work_items.c.id == item_id)).one())
    return row.status, row.attempts


def _run(backend: Backend, dispatchers: list[Dispatcher], until: float) -> None:
    async def go() -> None:
        tasks = [asyncio.create_task(d.run_forever()) for d in dispatchers]
        await asyncio.sleep(until)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    backend.loop.run(go())


def _cleanup(backend: Backend) -> None:
    def wipe(conn: Connection) -> None:
        conn.execute(work_items.delete().where(work_items.c.ref.like("contract-%")))

    backend.write(wipe)


def test_each_due_item_runs_once_across_two_workers(own_backend: Backend) -> None:
    backend = own_backend
    ids = [_enqueue(backend, f"contract-a-{i}") for i in range(40)]
    seen: list[str] = []
    running: set[str] = set()
    overlaps: list[str] = []

    async def handler(item: WorkItem) -> WorkResult:
        if item.ref in running:
            overlaps.append(item.ref)
        running.add(item.ref)
        await asyncio.sleep(0.01)
        running.discard(item.ref)
        seen.append(item.ref)
        return WorkResult.done()

    workers = [dispatcher(backend, handler, concurrency=8) for _ in range(2)]
    for worker in workers:
        worker.wake()
    _run(backend, workers, 2.0)
    mine = [r for r in seen if r.startswith("contract-a-")]
    assert sorted(mine) == sorted(f"contract-a-{i}" for i in range(40))
    assert not overlaps
    assert all(_status(backend, i) == ("done", 1) for i in ids)
    _cleanup(backend)


def test_a_retry_waits_for_its_time(own_backend: Backend) -> None:
    backend = own_backend
    item_id = _enqueue(backend, "contract-retry")
    calls: list[float] = []

    async def handler(item: WorkItem) -> WorkResult:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            return WorkResult.retry(utcnow() + timedelta(seconds=1.2), "try later")
        return WorkResult.done()

    _run(backend, [dispatcher(backend, handler)], 3.5)
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 1.1
    assert _status(backend, item_id) == ("done", 2)
    _cleanup(backend)


def test_items_not_yet_due_are_left_alone(own_backend: Backend) -> None:
    backend = own_backend
    item_id = _enqueue(backend, "contract-later", delay=timedelta(hours=1))

    async def handler(item: WorkItem) -> WorkResult:
        raise AssertionError("ran too early")

    _run(backend, [dispatcher(backend, handler)], 1.2)
    assert _status(backend, item_id) == ("queued", 0)
    _cleanup(backend)


def test_an_expired_lease_is_taken_over(own_backend: Backend) -> None:
    backend = own_backend
    item_id = _enqueue(backend, "contract-crashed")
    past = utcnow() - timedelta(seconds=1)

    def crashed_worker_held_it(conn: Connection) -> None:
        conn.execute(
            update(work_items)
            .where(work_items.c.id == item_id)
            .values(status="leased", lease_until=past, lease_token="dead", attempts=1)
        )

    backend.write(crashed_worker_held_it)
    ran: list[str] = []

    async def handler(item: WorkItem) -> WorkResult:
        ran.append(item.ref)
        return WorkResult.done()

    _run(backend, [dispatcher(backend, handler)], 1.5)
    assert ran == ["contract-crashed"]
    assert _status(backend, item_id) == ("done", 2)
    _cleanup(backend)


def test_a_handler_that_raises_is_retried_later(own_backend: Backend) -> None:
    backend = own_backend
    item_id = _enqueue(backend, "contract-raises")

    async def handler(item: WorkItem) -> WorkResult:
        raise RuntimeError("boom")

    _run(backend, [dispatcher(backend, handler)], 1.0)
    row = backend.read(lambda conn: conn.execute(select(work_items).where(work_items.c.id == item_id)).one())
    assert row.status == "queued" and row.attempts == 1
    assert row.last_error == "RuntimeError: boom"
    assert row.run_at > utcnow() + timedelta(seconds=20)
    _cleanup(backend)
