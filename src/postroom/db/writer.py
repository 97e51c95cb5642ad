"""The SQLite writer: group commit, with the units of work run on the event loop and only waiting done on threads.

SQLite allows one writer at a time and every durable commit costs an fsync. Instead of one transaction (and one
fsync) per request, writes submitted on an event loop are gathered: while one batch commits, the next collects.
A batch takes the write lock (``BEGIN IMMEDIATE``), runs each unit of work inside a savepoint, commits once, and
only then resolves the callers' futures. A unit of work that raises is rolled back to its savepoint alone; a
failed commit fails the whole batch. Either way no caller hears "done" before its data is on disk.

Where the work runs matters in Python. Units of work are short Python functions around SQLite calls; on a writer
thread of their own, every SQLite call the event loop makes (the guard's key lookup, say) hands the interpreter
lock to the writer and the loop then waits for it back, a few hundred microseconds a request under load. So the
units of work run on the loop itself, where they cost the same CPU without the hand-offs. What can block, taking
the write lock (another process may hold it, up to the busy timeout) and the commit's fsync, runs on a small
thread pool while the loop serves other requests. A process-wide lock keeps batches from different event loops
(the CLI's, a test's) one at a time on the one database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

MAX_BATCH = 256


@dataclass(slots=True)
class _Job:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _LoopQueue:
    jobs: list[_Job] = field(default_factory=list)
    flushing: bool = False


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled (its client went away): the data is committed all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _fail(jobs: list[_Job], error: BaseException) -> None:
    for job in jobs:
        _settle(job.future, None, error)


def _settle_after(committing: asyncio.Future[None], batch: list[_Job], outcomes: list[tuple[_Job, Any, Any]]) -> None:
    """Tell the callers how a commit that outlived its task ended."""
    if committing.cancelled() or committing.exception() is not None:
        _fail(batch, committing.exception() or asyncio.CancelledError())
        return
    for job, result, error in outcomes:
        _settle(job.future, result, error)


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queues: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
        self._lock = threading.Lock()  # one open write transaction in this process
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="postroom-sqlite")
        self._flushers: set[asyncio.Task[None]] = set()

    def submit(self, fn: Callable[[Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``fn`` to run in the next committed batch; the future resolves after the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _LoopQueue()
        queue.jobs.append(_Job(fn, future))
        if not queue.flushing:
            queue.flushing = True
            task = loop.create_task(self._flush(loop, queue))
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return future

    def close(self) -> None:
        """Stop the threads (call after the writes this process waits for have finished)."""
        self._threads.shutdown(wait=True)

    async def _flush(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue) -> None:
        try:
            while queue.jobs:
                batch, queue.jobs[:] = queue.jobs[: self._max_batch], queue.jobs[self._max_batch :]
                await self._commit(loop, batch)
        finally:
            queue.flushing = False
            if queue.jobs:  # only when this task was cancelled: nobody would start their batch
                _fail(queue.jobs, asyncio.CancelledError())
                queue.jobs.clear()
            self._queues.pop(loop, None)

    async def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        # Each step that runs on a thread is shielded: if this task is cancelled (the loop is shutting down), the
        # step still ends properly, and whatever it opened is closed when it does.
        beginning = loop.run_in_executor(self._threads, self._begin)
        try:
            conn = await asyncio.shield(beginning)
        except asyncio.CancelledError:
            beginning.add_done_callback(self._abandon)
            _fail(batch, asyncio.CancelledError())
            raise
        except Exception as exc:  # the write lock was not had (another process held it too long), or no database
            _fail(batch, exc)
            return
        try:
            outcomes = self._run(conn, batch)
        except Exception as exc:
            _fail(batch, exc)
            await asyncio.shield(loop.run_in_executor(self._threads, self._finish, conn, False))
            return
        committing = loop.run_in_executor(self._threads, self._finish, conn, True)
        try:
            await asyncio.shield(committing)
        except asyncio.CancelledError:
            committing.add_done_callback(lambda done: _settle_after(done, batch, outcomes))
            raise
        except Exception as exc:
            _fail(batch, exc)
            return
        for job, result, error in outcomes:
            _settle(job.future, result, error)

    @staticmethod
    def _run(conn: Connection, batch: list[_Job]) -> list[tuple[_Job, Any, Exception | None]]:
        """Run the batch's units of work; a single one that raises fails the batch (nothing else to keep)."""
        if len(batch) == 1:
            return [(batch[0], batch[0].fn(conn), None)]
        # Savepoints go straight to the driver: through SQLAlchemy each costs ~75 µs, more than the inserts of a
        # typical send together (db/direct.py).
        raw = conn.connection.driver_connection
        assert raw is not None
        outcomes: list[tuple[_Job, Any, Exception | None]] = []
        for job in batch:
            raw.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                raw.execute("ROLLBACK TO job")
                raw.execute("RELEASE job")
                outcomes.append((job, None, exc))
            else:
                raw.execute("RELEASE job")
                outcomes.append((job, result, None))
        return outcomes

    def _abandon(self, beginning: asyncio.Future[Connection]) -> None:
        if not beginning.cancelled() and beginning.exception() is None:
            self._threads.submit(self._finish, beginning.result(), False)

    def _begin(self) -> Connection:
        """Take the process's write lock, then SQLite's (``BEGIN IMMEDIATE`` may wait for another process)."""
        self._lock.acquire()
        try:
            conn = self._engine.connect()
            try:
                conn.execution_options(postroom_write=True)
                conn.begin()
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        return conn

    def _finish(self, conn: Connection, commit: bool) -> None:
        """Commit (fsync) or roll back, return the connection, release the write lock."""
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()
            self._lock.release()
