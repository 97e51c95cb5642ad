"""Every SQL statement about failed authentications and IP blocks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from postroom.db.direct import Prepared
from postroom.models import api_keys, auth_blocks, auth_failures

_BLOCK_UNTIL = select(auth_blocks.c.blocked_until).where(auth_blocks.c.ip == bindparam("ip"))

# The guard's one query per request: the caller's IP block (if any) and the presented key (if any), in one row.
_ONE_ROW = select(literal(1).label("one")).subquery()
_GUARD_LOOKUP = Prepared(
    select(
        _BLOCK_UNTIL.scalar_subquery().label("blocked_until"), *[c.label(f"key_{c.name}") for c in api_keys.c]
    ).select_from(_ONE_ROW.outerjoin(api_keys, api_keys.c.digest == bindparam("digest")))
)
_KEY_NAMES = tuple(c.name for c in api_keys.c)


def block_until(conn: Connection, ip: str) -> datetime | None:
    return conn.execute(_BLOCK_UNTIL, {"ip": ip}).scalar()


def guard_lookup(
    conn: Connection, ip: str | None, digest: bytes | None
) -> tuple[datetime | None, dict[str, Any] | None]:
    """When the block on ``ip`` ends (if it is blocked) and the key row whose digest is ``digest`` (if any).

    This runs on every API request: on SQLite straight on the driver (``db/direct.py``).
    """
    row = _GUARD_LOOKUP.execute(conn, {"ip": ip, "digest": digest}).one()
    return row.blocked_until, None if row.key_id is None else dict(zip(_KEY_NAMES, row[1:], strict=True))


def insert_failure(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(auth_failures.insert(), values)


def count_counted_failures(conn: Connection, ip: str, since: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(auth_failures)
            .where(
                auth_failures.c.ip == ip,
                auth_failures.c.occurred_at > since,
                auth_failures.c.counts_toward_lockout.is_(True),
            )
        ).scalar_one()
    )


def upsert_block(conn: Connection, ip: str, until: datetime, now: datetime) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(auth_blocks).values(ip=ip, blocked_until=until, created_at=now)
    conn.execute(statement.on_conflict_do_update(index_elements=["ip"], set_={"blocked_until": until}))


def delete_expired_blocks(conn: Connection, now: datetime) -> None:
    conn.execute(delete(auth_blocks).where(auth_blocks.c.blocked_until <= now))


def delete_failures_before(conn: Connection, cutoff: datetime) -> None:
    conn.execute(delete(auth_failures).where(auth_failures.c.occurred_at < cutoff))
