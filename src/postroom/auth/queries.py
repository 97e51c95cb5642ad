"""Every SQL statement about failed authentications and IP blocks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from postroom.models import auth_blocks, auth_failures


def block_until(conn: Connection, ip: str) -> datetime | None:
    return conn.execute(select(auth_blocks.c.blocked_until).where(auth_blocks.c.ip == ip)).scalar()


def insert_failure(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(auth_failures.insert().values(**values))


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


def recent_failures(conn: Connection, team_id: int | None, limit: int) -> Sequence[Row[Any]]:
    """Newest first. With a team: failures with that team's keys; ``None``: every failure (operators)."""
    query = select(auth_failures).order_by(auth_failures.c.occurred_at.desc(), auth_failures.c.id.desc()).limit(limit)
    if team_id is not None:
        query = query.where(auth_failures.c.team_id == team_id)
    return conn.execute(query).fetchall()


def delete_failures_before(conn: Connection, cutoff: datetime) -> None:
    conn.execute(delete(auth_failures).where(auth_failures.c.occurred_at < cutoff))
