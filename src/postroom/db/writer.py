"""The single SQLite writer with group commit.

SQLite allows one writer at a time and every durable commit costs an fsync. Instead of one transaction (and one
fsync) per request, every write in the process is queued to this one thread, which takes everything waiting,
runs each unit of work inside a savepoint of one ``BEGIN IMMEDIATE`` transaction, commits once, and only then
resolves the callers' futures. A unit of work that raises is rolled back to its savepoint alone; a failed commit
fails the whole batch. Either way no caller hears "done" before its data is on disk.

Several processes may write one database: ``postroom worker`` or ``postroom smtp`` beside ``postroom api``, and the
CLI's commands. Each batch first takes an exclusive ``flock`` on ``<database>.write-lock``, so their writers queue
in the kernel and each gets the lock as soon as it is free. Without it they meet at SQLite's own lock, whose busy
handler sleeps and polls, and the busier writer keeps winning: under full send load a worker in its own process
delivered about 50 messages in 10 s, against about 2,700 with the lock. The ``flock`` only orders writers; ``BEGIN
IMMEDIATE`` still guards the data, for writers that do not take it (migrations).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

MAX_BATCH = 256


@dataclass(slots=True)
class _Job:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(job: _Job, result: Any, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop has closed; nobody is waiting any more
        pass


class GroupCommitWriter:
    def __init__(self, engine: Engine, *, lock_path: str, max_batch: int = MAX_BATCH) -> None:
        """``lock_path`` is the file whose ``flock`` every writer of the database takes for a batch."""
        self._engine = engine
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn: Connection | None = None  # the writer thread's own, kept between batches
        self._thread = threading.Thread(target=self._run, name="postroom-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``fn`` to run in the next committed batch; the future resolves after the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(fn, future, loop))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._discard()
            os.close(self._lock_fd)

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._commit(batch)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _connection(self) -> Connection:
        """The connection batches run on: the thread keeps one, since a pool checkout and return per batch cost
        more than a small batch's statements."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._discard()
            self._conn = self._engine.connect().execution_options(postroom_write=True)
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is dropped either way
                conn.close()

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn = self._connection()
            with conn.begin():
                # Savepoints go straight to the driver: through SQLAlchemy each costs ~75 µs, more than the
                # inserts of a typical send together (db/direct.py).
                raw = conn.connection.driver_connection
                assert raw is not None
                for job in batch:
                    if len(batch) == 1:
                        outcomes.append((job, job.fn(conn), None))
                        continue
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
        except Exception as exc:
            self._discard()  # whatever state a failed commit left, the next batch starts on a fresh connection
            for job in batch:
                _resolve(job, None, exc)
            return
        for job, result, error in outcomes:
            _resolve(job, result, error)
