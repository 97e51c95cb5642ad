"""Every SQL statement about the audit log. There is deliberately no update or delete here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, select

from postroom.models import audit_log


def last_row_hash(conn: Connection) -> str | None:
    return conn.execute(select(audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()


def insert_entry(conn: Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(audit_log.insert().values(**values).returning(audit_log.c.id)).scalar_one())


def entries_in_team(
    conn: Connection, team_id: int, *, limit: int, before_id: int | None, action_prefix: str | None
) -> Sequence[Row[Any]]:
    """Newest first."""
    query = select(audit_log).where(audit_log.c.team_id == team_id)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    if action_prefix:
        query = query.where(audit_log.c.action.startswith(action_prefix, autoescape=True))
    return conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit)).fetchall()


def all_entries(conn: Connection) -> Sequence[Row[Any]]:
    """Oldest first, every team: for checking the hash chain."""
    return conn.execute(select(audit_log).order_by(audit_log.c.id)).fetchall()
