"""Which database errors mean "the database is unavailable" (retry later, 503) rather than "the request was wrong".

Unavailable is anything that says nothing was done and the same request may succeed later: the server refused,
reset or timed out the connection, has no connection to spare, is shutting down or starting up, is a read-only
standby (after a failover, until the old connections are gone), or has no disk space left; SQLite's disk full,
I/O error and busy database belong here too. Errors in what we asked of the database (a constraint violated, bad
SQL) are not: they are bugs, and stay 500.

SQLAlchemy wraps the driver's errors in ``DBAPIError`` with the original in ``orig`` (asyncpg's own exception is
the ``__cause__`` of the adapter's); a connection that cannot be opened at all often arrives unwrapped (a bare
``ConnectionRefusedError`` or ``TimeoutError``). Every link of the chain is looked at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import asyncpg
import sqlalchemy.exc

_POSTGRES_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # refused, lost, cannot connect now (startup, recovery)
    asyncpg.exceptions.InterfaceError,  # the connection is closed or in a state it cannot recover from
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby (a failover whose old primary we still reach)
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout, or a cancel from outside
    asyncpg.exceptions.ConnectionDoesNotExistError,
)

_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_FULL: "disk_full",
    sqlite3.SQLITE_IOERR: "io_error",
    sqlite3.SQLITE_BUSY: "busy",
    sqlite3.SQLITE_LOCKED: "busy",
    sqlite3.SQLITE_CANTOPEN: "io_error",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.orig is not None:
            yield from _chain(current.orig)
        current = current.__cause__ or current.__context__


def unavailable_reason(exc: BaseException) -> str | None:
    """Why ``exc`` says the database is unavailable (``disk_full``, ``unreachable``, …), or None when it does not."""
    for link in _chain(exc):
        if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
            return "unreachable"
        if isinstance(link, sqlalchemy.exc.TimeoutError):  # no pooled connection came free in time
            return "pool_exhausted"
        if isinstance(link, sqlalchemy.exc.InterfaceError):
            return "unreachable"
        if isinstance(link, sqlite3.Error):
            code = getattr(link, "sqlite_errorcode", None)
            reason = None if code is None else _SQLITE_UNAVAILABLE.get(code & 0xFF)
            if reason is not None:
                return reason
            continue
        if isinstance(link, asyncpg.exceptions.DiskFullError):
            return "disk_full"
        if isinstance(link, asyncpg.exceptions.ReadOnlySQLTransactionError):
            return "read_only"
        if isinstance(link, asyncpg.exceptions.QueryCanceledError):
            return "timeout"
        if isinstance(link, _POSTGRES_UNAVAILABLE):
            return "unreachable"
        if isinstance(link, TimeoutError):  # asyncpg's connect and command timeouts
            return "timeout"
        if isinstance(link, OSError) and not isinstance(link, FileNotFoundError | PermissionError):
            return "disk_full" if link.errno == 28 else "unreachable"  # ENOSPC, else refused / reset / no route
    return None


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not do the work now (worth a retry, 503), as opposed to a fault in
    what we asked of it (a bug, 500)."""
    return unavailable_reason(exc) is not None
