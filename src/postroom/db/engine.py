"""Database access: one interface, two engines.

Units of work are plain functions taking a SQLAlchemy ``Connection`` (the query layer is synchronous Core), so
the same code runs

- on **SQLite** (the embedded default): reads on a small pool of reader threads, each with its own connection
  (WAL readers never wait for the writer or for each other), so a slow query delays only its own request and
  never the event loop; each statement sees its own snapshot, so a read sees every write committed before it
  started; writes through the group-commit writer thread (``writer.py``); every connection uses WAL,
  ``synchronous=FULL``, ``foreign_keys=ON`` and a busy timeout, and every write transaction starts with
  ``BEGIN IMMEDIATE`` so other processes (the CLI) queue instead of failing;
- on **PostgreSQL**: through asyncpg, each unit of work run with ``AsyncConnection.run_sync``; reads in
  autocommit, each write in its own transaction (``synchronous_commit`` stays on, so a commit is durable).

``write`` returns only after the transaction has committed; that is what lets an API answer 2xx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from postroom.config import Settings
from postroom.db.errors import unavailable_reason

T = TypeVar("T")
UnitOfWork = Callable[[Connection], T]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_ID = 80250001  # PostgreSQL advisory lock: one process migrates at a time

log = logging.getLogger("postroom.db")


MIN_FREE_BYTES = 1024 * 1024
"""Below this much free space on its file system, an SQLite database is reported as full before a write fails."""
WRITE_PROBLEMS = frozenset({"disk_full", "read_only", "io_error"})
"""Reasons a write fails that say every write will fail until something changes."""
WRITE_PROBLEM_SECONDS = 30.0

HEAD_REVISION = "0016"
"""The newest revision in ``migrations/versions`` (a test holds it to alembic's own answer)."""


def schema_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _upgrade_to_head(conn: Connection) -> None:
    # Every process migrates as it starts; when there is nothing to do, alembic (which imports and reads every
    # revision file, a large part of a worker's start-up) is not loaded at all.
    if schema_revision(conn) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


class Database(ABC):
    """Run units of work: ``read`` (no changes kept) and ``write`` (committed before it returns)."""

    dialect: str

    @abstractmethod
    async def read(self, fn: UnitOfWork[T]) -> T: ...

    @abstractmethod
    async def write(self, fn: UnitOfWork[T]) -> T: ...

    @abstractmethod
    async def migrate(self, then: UnitOfWork[None] | None = None) -> None:
        """Bring the schema to the newest revision, then run ``then`` in the same transaction."""

    @abstractmethod
    async def close(self) -> None: ...

    def write_soon(self, fn: UnitOfWork[Any]) -> None:
        """Best-effort write nobody waits for (bookkeeping such as a key's last use); failures are logged."""
        task = asyncio.ensure_future(self.write(fn))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background write failed: %r", task.exception())

    _background: set[asyncio.Future[Any]]

    _write_failure: tuple[str, float] | None = None

    def write_problem(self) -> str | None:
        """Why writes cannot succeed now (``disk_full``, ``read_only``, ``io_error``), or None: the reason the last
        write failed for, until a write succeeds or ``WRITE_PROBLEM_SECONDS`` pass without another such failure
        (a process taken out of rotation gets no writes to prove it has recovered). Readiness reports it."""
        failure = self._write_failure
        if failure is None or time.monotonic() - failure[1] > WRITE_PROBLEM_SECONDS:
            return None
        return failure[0]

    def _watch_write(self, error: BaseException) -> None:
        reason = unavailable_reason(error)
        if reason in WRITE_PROBLEMS:
            self._write_failure = (reason, time.monotonic())

    async def drain(self) -> None:
        """Wait for background writes (at shutdown and in tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def sqlite_file(url: str) -> str:
    """The file a ``sqlite:///`` URL names; the write lock and the rate-limit counters live beside it."""
    return url.removeprefix("sqlite:///")


READER_THREADS = 4
"""SQLite reader threads per process: reads beyond this many at once queue for a free one."""


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, url: str, *, reader_threads: int = READER_THREADS) -> None:
        from postroom.db.writer import GroupCommitWriter

        path = sqlite_file(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._directory = str(Path(path).parent)
        self._engine = create_engine(url, pool_size=8, max_overflow=8)
        event.listen(self._engine, "connect", _sqlite_on_connect)
        event.listen(self._engine, "begin", _sqlite_on_begin)
        self._writer = GroupCommitWriter(self._engine, lock_path=f"{path}.write-lock")
        self._readers = threading.local()
        self._reader_connections: list[Connection] = []
        self._reader_pool = ThreadPoolExecutor(max_workers=reader_threads, thread_name_prefix="postroom-sqlite-reader")
        self._background = set()

    async def read(self, fn: UnitOfWork[T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, self._read, fn)

    def _read(self, fn: UnitOfWork[T]) -> T:
        # Each reader thread keeps one connection instead of paying a pool checkout per request.
        conn = getattr(self._readers, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._readers.conn = self._engine.connect()
            self._reader_connections.append(conn)
        try:
            return fn(conn)
        finally:
            conn.rollback()

    async def write(self, fn: UnitOfWork[T]) -> T:
        try:
            result: T = await self._writer.submit(fn)
        except Exception as exc:
            self._watch_write(exc)
            raise
        self._write_failure = None
        return result

    def write_problem(self) -> str | None:
        """Also ``disk_full`` when the database's file system has less than ``MIN_FREE_BYTES`` left."""
        try:
            stats = os.statvfs(self._directory)
        except OSError:
            return super().write_problem()
        if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
            return "disk_full"
        problem = super().write_problem()
        return None if problem == "disk_full" else problem  # space is back: the next write will tell

    async def migrate(self, then: UnitOfWork[None] | None = None) -> None:
        def run() -> None:
            with self._engine.connect() as conn:
                # Table rebuilds in batch migrations must not cascade deletes, and the pragma is ignored
                # inside a transaction: switch it off on the raw connection first, check integrity after.
                raw = conn.connection.driver_connection
                assert raw is not None
                raw.execute("PRAGMA foreign_keys=OFF")
                conn.execution_options(postroom_write=True)
                with conn.begin():
                    _upgrade_to_head(conn)
                    if then is not None:
                        then(conn)
                problems = raw.execute("PRAGMA foreign_key_check").fetchall()
                raw.execute("PRAGMA foreign_keys=ON")
                if problems:
                    raise RuntimeError(f"migration left foreign-key violations: {problems[:5]}")

        await asyncio.to_thread(run)

    async def close(self) -> None:
        await self.drain()
        await asyncio.to_thread(self._writer.close)
        self._reader_pool.shutdown(wait=True)
        for reader in self._reader_connections:
            reader.close()
        self._engine.dispose()


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event decides how transactions start
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Reads run without an explicit transaction: each statement sees its own snapshot, as under PostgreSQL's
    # READ COMMITTED, and a request saves a round of BEGIN/ROLLBACK.
    if conn.get_execution_options().get("postroom_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a PostgreSQL connection may take to open, a statement to run, a request to wait for the pool
    (seconds; see ``Settings``), so that a database that is down answers 503 fast instead of holding requests."""

    connect: float = 1.5
    statement: float = 5.0
    pool: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            connect=settings.database_connect_timeout_seconds,
            statement=settings.database_statement_timeout_seconds,
            pool=settings.database_pool_timeout_seconds,
        )

    def asyncpg_connect_args(self) -> dict[str, Any]:
        """``asyncpg.connect`` arguments: the server cancels a statement after ``statement`` seconds, and the client
        gives up on one a connect timeout later (a server that stopped answering altogether)."""
        return {
            "timeout": self.connect,
            "command_timeout": self.statement + self.connect,
            "server_settings": {"statement_timeout": str(int(self.statement * 1000))},
        }


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 20, timeouts: Timeouts | None = None) -> None:
        # Each of the two pools opens at most ``max_connections`` (POSTROOM_DATABASE_POOL_SIZE): with many
        # processes on one server, their sum must stay under PostgreSQL's max_connections.
        pool_size = min(10, max_connections)
        overflow = max_connections - pool_size
        self.timeouts = timeouts = timeouts or Timeouts()
        common: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": overflow,
            "pool_timeout": timeouts.pool,
            "connect_args": timeouts.asyncpg_connect_args(),
        }
        self._engine = create_async_engine(url, **common)
        # Reads in autocommit on a pool of their own: no BEGIN/ROLLBACK round trips and no isolation level to
        # reset on every checkout; READ COMMITTED gives each statement its own snapshot anyway.
        self._read_engine = create_async_engine(url, **common, isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
        self._background = set()

    async def read(self, fn: UnitOfWork[T]) -> T:
        async with self._read_engine.connect() as conn:
            return await conn.run_sync(fn)

    async def write(self, fn: UnitOfWork[T]) -> T:
        try:
            async with self._engine.begin() as conn:
                result = await conn.run_sync(fn)
        except Exception as exc:
            self._watch_write(exc)
            raise
        self._write_failure = None
        return result

    async def migrate(self, then: UnitOfWork[None] | None = None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 0"))  # a migration may rewrite large tables
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            await conn.run_sync(_upgrade_to_head)
            if then is not None:
                await conn.run_sync(then)

    async def close(self) -> None:
        await self.drain()
        await self._engine.dispose()
        await self._read_engine.dispose()


def open_database(settings: Settings) -> Database:
    """The database the settings name: PostgreSQL when ``POSTROOM_DATABASE_URL`` says so, else embedded SQLite."""
    url = settings.effective_database_url
    if url.startswith("postgresql+asyncpg://"):
        return PostgresDatabase(
            url, max_connections=settings.database_pool_size, timeouts=Timeouts.from_settings(settings)
        )
    return SQLiteDatabase(url)


def serialise_on(conn: Connection, name: str) -> None:
    """Serialise concurrent writers of one logical thing (e.g. one IP's failure count) for this transaction.

    SQLite writers are already serialised by ``BEGIN IMMEDIATE``; PostgreSQL takes a transaction advisory lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
