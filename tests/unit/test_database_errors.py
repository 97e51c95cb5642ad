"""``postroom.db.errors``: which failures are "the database is unavailable" (503) and which are bugs (500).

The errors are made the way the drivers raise them (a real refused connect, a real full SQLite database where one
can be had cheaply); the classification is one function, so this is its unit test.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from datetime import timedelta

import asyncpg
import pytest
import sqlalchemy.exc

from postroom.db.errors import database_unavailable, unavailable_reason
from postroom.jobs.base import Backoff, DispatcherGaveUp, DispatcherStatus


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def test_a_refused_connection_from_asyncpg_is_unavailable() -> None:
    async def connect() -> None:
        await asyncpg.connect(f"postgresql://x@127.0.0.1:{_refused_port()}/x", timeout=2)

    with pytest.raises(OSError) as caught:
        asyncio.run(connect())
    assert unavailable_reason(caught.value) == "unreachable"


def test_a_connect_that_times_out_is_unavailable() -> None:
    with socket.socket() as silent:  # accepts the TCP connection and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()

        async def connect() -> None:
            await asyncpg.connect(f"postgresql://x@127.0.0.1:{silent.getsockname()[1]}/x", timeout=0.3)

        with pytest.raises(TimeoutError) as caught:
            asyncio.run(connect())
    assert unavailable_reason(caught.value) == "timeout"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (asyncpg.exceptions.ReadOnlySQLTransactionError("read-only"), "read_only"),
        (asyncpg.exceptions.DiskFullError("no space"), "disk_full"),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), "unreachable"),
        (asyncpg.exceptions.AdminShutdownError("terminating"), "unreachable"),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), "unreachable"),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), "timeout"),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), "unreachable"),
        (ConnectionResetError(), "unreachable"),
    ],
)
def test_driver_errors_wrapped_by_sqlalchemy_are_unavailable(error: Exception, reason: str) -> None:
    adapted = Exception("adapter")
    adapted.__cause__ = error  # how SQLAlchemy's asyncpg adapter chains the driver's exception
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, adapted)
    assert unavailable_reason(wrapped) == reason
    assert unavailable_reason(error) == reason


def test_a_full_sqlite_database_is_disk_full_and_a_constraint_is_a_bug() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v TEXT UNIQUE)")
    conn.execute("PRAGMA max_page_count = 2")  # a database that cannot grow: SQLite says SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    assert unavailable_reason(sqlalchemy.exc.OperationalError("INSERT", {}, full.value)) == "disk_full"
    conn.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(sqlite3.IntegrityError) as duplicate:
        conn.execute("INSERT INTO t VALUES ('a')")
    assert not database_unavailable(sqlalchemy.exc.IntegrityError("INSERT", {}, duplicate.value))
    assert not database_unavailable(ValueError("a bug"))


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(first=0.2, cap=5.0)
    delays = [backoff.next() for _ in range(20)]
    assert all(0 < d <= 5.0 for d in delays)
    assert delays[0] <= 0.2 and max(delays[-5:]) > 2.5
    assert len(set(delays[-5:])) == 5  # not in step with another worker's
    backoff.reset()
    assert backoff.next() <= 0.2


def test_a_dispatcher_gives_up_only_after_the_reconnect_timeout() -> None:
    status = DispatcherStatus()
    status.down(ConnectionRefusedError())
    assert status.last_error == "unreachable" and not status.connected
    status.check_recovery(timedelta(minutes=1))  # not yet
    with pytest.raises(DispatcherGaveUp):
        status.check_recovery(timedelta(0))
    status.up()
    status.check_recovery(timedelta(0))
    assert status.connected and status.down_since is None
