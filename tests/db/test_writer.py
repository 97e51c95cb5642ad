"""The SQLite group-commit writer: waiting never blocks the event loop, callers may go away, and event loops in
several threads share it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from postroom.config import load_settings
from postroom.db.engine import SQLiteDatabase, open_database
from postroom.models import teams

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SQLiteDatabase]:
    db = open_database(load_settings({"POSTROOM_DATA_DIR": str(tmp_path)}))
    assert isinstance(db, SQLiteDatabase)
    asyncio.run(db.migrate())
    yield db
    asyncio.run(db.close())


def _insert(name: str):  # type: ignore[no-untyped-def]
    def work(conn: Connection) -> str:
        conn.execute(teams.insert().values(name=name, created_at=T0, updated_at=T0))
        return name

    return work


def _names(db: SQLiteDatabase) -> set[str]:
    async def read() -> set[str]:
        return set(await db.read(lambda conn: conn.execute(select(teams.c.name)).scalars().all()))

    return asyncio.run(read())


def test_waiting_for_another_process_write_lock_does_not_stop_the_event_loop(
    database: SQLiteDatabase, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "postroom.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as a CLI command or another process would

    async def scenario() -> tuple[int, str]:
        ticks = 0
        write = asyncio.ensure_future(database.write(_insert("after the lock")))

        async def ticker() -> None:
            nonlocal ticks
            while not write.done():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.5)
        assert not write.done()
        other.execute("ROLLBACK")
        name = await asyncio.wait_for(write, 10)
        await ticking
        return ticks, name

    ticks, name = asyncio.run(scenario())
    other.close()
    assert name == "after the lock"
    assert ticks >= 25, f"the loop ran only {ticks} times in the half second the write waited"
    assert "after the lock" in _names(database)


def test_a_batch_waits_for_the_write_lock_that_every_writer_of_the_database_takes(
    database: SQLiteDatabase, tmp_path: Path
) -> None:
    lock = os.open(tmp_path / "postroom.db.write-lock", os.O_RDWR)  # created by the writer, as another process finds it
    fcntl.flock(lock, fcntl.LOCK_EX)  # another process's writer, mid-batch

    async def scenario() -> str:
        write = asyncio.ensure_future(database.write(_insert("after the other writer")))
        await asyncio.sleep(0.3)
        assert not write.done(), "the batch ran while another writer held the lock"
        fcntl.flock(lock, fcntl.LOCK_UN)
        return await asyncio.wait_for(write, 10)

    try:
        assert asyncio.run(scenario()) == "after the other writer"
    finally:
        os.close(lock)
    assert "after the other writer" in _names(database)
    assert oct((tmp_path / "postroom.db.write-lock").stat().st_mode & 0o777) == "0o600"


_WRITING_PROCESS = """
import asyncio, sys
from datetime import UTC, datetime
from postroom.config import load_settings
from postroom.db.engine import open_database
from postroom.models import teams

T0 = datetime(2030, 1, 1, tzinfo=UTC)

async def main(prefix):
    db = open_database(load_settings({"POSTROOM_DATA_DIR": sys.argv[1]}))
    def insert(name):
        return lambda conn: conn.execute(teams.insert().values(name=name, created_at=T0, updated_at=T0))
    await asyncio.gather(*(db.write(insert(f"{prefix}-{i}")) for i in range(300)))
    await db.close()

asyncio.run(main(sys.argv[2]))
"""


def test_writers_in_three_processes_all_commit_while_this_one_writes_too(
    database: SQLiteDatabase, tmp_path: Path
) -> None:
    others = [
        subprocess.Popen([sys.executable, "-c", _WRITING_PROCESS, str(tmp_path), f"process{n}"]) for n in range(3)
    ]

    async def here() -> None:
        await asyncio.gather(*(database.write(_insert(f"here-{i}")) for i in range(300)))

    asyncio.run(here())
    assert [other.wait(timeout=60) for other in others] == [0, 0, 0]
    names = _names(database)
    for prefix in ("here", "process0", "process1", "process2"):
        assert {f"{prefix}-{i}" for i in range(300)} <= names, prefix


def test_a_cancelled_caller_does_not_undo_or_stall_the_batch(database: SQLiteDatabase) -> None:
    async def scenario() -> list[str]:
        first = asyncio.ensure_future(database.write(_insert("cancelled caller")))
        await asyncio.sleep(0)  # the batch has started
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        names: list[str] = await asyncio.gather(*(database.write(_insert(f"next {i}")) for i in range(20)))
        return names

    assert asyncio.run(scenario()) == [f"next {i}" for i in range(20)]
    assert {"cancelled caller", *(f"next {i}" for i in range(20))} <= _names(database)


def test_writes_from_event_loops_in_two_threads_all_commit(database: SQLiteDatabase) -> None:
    errors: list[BaseException] = []

    def run(prefix: str) -> None:
        async def many() -> None:
            for chunk in range(10):
                await asyncio.gather(*(database.write(_insert(f"{prefix}-{chunk}-{i}")) for i in range(10)))

        try:
            asyncio.run(many())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(prefix,)) for prefix in ("a", "b")]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and time.monotonic() - started < 60
    names = _names(database)
    assert {f"{p}-{c}-{i}" for p in "ab" for c in range(10) for i in range(10)} <= names

    async def count() -> int:
        return int(await database.read(lambda conn: conn.execute(select(func.count()).select_from(teams)).scalar_one()))

    assert asyncio.run(count()) == 200


def test_a_statement_the_database_refuses_rolls_back_its_unit_of_work_alone(database: SQLiteDatabase) -> None:
    def duplicate(conn: Connection) -> None:
        conn.execute(teams.insert().values(name="half done", created_at=T0, updated_at=T0))
        conn.execute(teams.insert().values(id=1, name="clash", created_at=T0, updated_at=T0))  # id 1 exists

    async def scenario() -> list[object]:
        await database.write(_insert("first"))  # id 1
        outcomes: list[object] = await asyncio.gather(
            database.write(_insert("before")),
            database.write(duplicate),
            database.write(_insert("after")),
            return_exceptions=True,
        )
        return outcomes

    before, failed, after = asyncio.run(scenario())
    assert (before, after) == ("before", "after")
    assert isinstance(failed, IntegrityError)
    assert _names(database) == {"first", "before", "after"}


def test_a_batch_whose_commit_fails_fails_alone_and_the_next_one_commits(database: SQLiteDatabase) -> None:
    from postroom.models import projects

    def orphan(conn: Connection) -> None:
        # Checked at COMMIT, not at the statement: the commit itself is refused.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        conn.execute(projects.insert().values(team_id=987654, name="orphan", created_at=T0, updated_at=T0))

    async def scenario() -> str:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            await database.write(orphan)
        return str(await database.write(_insert("after a failed commit")))

    assert asyncio.run(scenario()) == "after a failed commit"
    assert "after a failed commit" in _names(database)

    def orphans(conn: Connection) -> int:
        return int(
            conn.execute(select(func.count()).select_from(projects).where(projects.c.team_id == 987654)).scalar_one()
        )

    assert asyncio.run(database.read(orphans)) == 0
