"""Every SQL statement about the audit log. There is deliberately no update or delete here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from postroom.models import audit_log


def last_row_hash(conn: Connection) -> str | None:
    return conn.execute(select(audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()


def insert_entry(conn: Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(audit_log.insert().values(**values).returning(audit_log.c.id)).scalar_one())


def entries(
    conn: Connection,
    *,
    team_id: int | None,
    limit: int | None,
    before_id: int | None = None,
    action_prefix: str | None = None,
    actor_contains: str | None = None,
    since: datetime | None = None,
) -> Sequence[Row[Any]]:
    """Newest first; ``team_id=None`` (the operator's command line) reads every team's entries."""
    query = select(audit_log)
    if team_id is not None:
        query = query.where(audit_log.c.team_id == team_id)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    if action_prefix:
        query = query.where(audit_log.c.action.startswith(action_prefix, autoescape=True))
    if actor_contains:
        query = query.where(audit_log.c.actor.icontains(actor_contains, autoescape=True))
    if since is not None:
        query = query.where(audit_log.c.occurred_at >= since)
    query = query.order_by(audit_log.c.id.desc())
    return conn.execute(query if limit is None else query.limit(limit)).fetchall()


def all_entries(conn: Connection) -> Sequence[Row[Any]]:
    """Oldest first, every team: for checking the hash chain."""
    return conn.execute(select(audit_log).order_by(audit_log.c.id)).fetchall()
