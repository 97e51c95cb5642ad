"""Every SQL statement about the local inbox. Tenant-scoped functions take the team first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select

from postroom.models import inbox_messages, messages

_LISTED = (
    inbox_messages.c.id,
    inbox_messages.c.message_id,
    inbox_messages.c.rcpt_to,
    inbox_messages.c.envelope_from,
    inbox_messages.c.subject,
    inbox_messages.c.captured_at,
    messages.c.request_id,
    messages.c.from_email,
)


def insert_captures(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(inbox_messages.insert(), list(rows))


def captures_in_team(
    conn: Connection, team_id: int, *, limit: int, offset: int = 0, message_id: str | None = None
) -> Sequence[Any]:
    """A team's captured messages, newest first; only those of one message with ``message_id``."""
    query = (
        select(*_LISTED)
        .join(messages, messages.c.id == inbox_messages.c.message_id)
        .where(inbox_messages.c.team_id == team_id)
        .order_by(inbox_messages.c.captured_at.desc(), inbox_messages.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if message_id is not None:
        query = query.where(inbox_messages.c.message_id == message_id)
    return conn.execute(query).fetchall()


def count_in_team(conn: Connection, team_id: int) -> int:
    query = select(func.count()).select_from(inbox_messages).where(inbox_messages.c.team_id == team_id)
    return int(conn.execute(query).scalar_one())


def capture_in_team(conn: Connection, team_id: int, capture_id: str) -> Any | None:
    query = (
        select(*_LISTED, inbox_messages.c.raw, messages.c.sending_domain)
        .join(messages, messages.c.id == inbox_messages.c.message_id)
        .where(inbox_messages.c.team_id == team_id, inbox_messages.c.id == capture_id)
    )
    return conn.execute(query).first()


def delete_captured_before(conn: Connection, cutoff: datetime) -> int:
    return conn.execute(delete(inbox_messages).where(inbox_messages.c.captured_at < cutoff)).rowcount or 0


def teams_over(conn: Connection, limit: int) -> Sequence[Row[Any]]:
    """Teams holding more than ``limit`` captures, with their count."""
    count = func.count().label("held")
    query = select(inbox_messages.c.team_id, count).group_by(inbox_messages.c.team_id).having(count > limit)
    return conn.execute(query).fetchall()


def delete_oldest(conn: Connection, team_id: int, keep: int) -> int:
    """Delete a team's captures beyond its ``keep`` newest."""
    newest = (
        select(inbox_messages.c.id)
        .where(inbox_messages.c.team_id == team_id)
        .order_by(inbox_messages.c.captured_at.desc(), inbox_messages.c.id.desc())
        .limit(keep)
    )
    statement = delete(inbox_messages).where(inbox_messages.c.team_id == team_id, inbox_messages.c.id.not_in(newest))
    return conn.execute(statement).rowcount or 0
