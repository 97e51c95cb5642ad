"""Every SQL statement about API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from postroom.models import api_keys


def insert_key(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(api_keys.insert(), values)


def key_in_team(conn: Connection, team_id: int, key_id: str) -> Row[Any] | None:
    return conn.execute(select(api_keys).where(api_keys.c.team_id == team_id, api_keys.c.id == key_id)).first()


def key_for_operator(conn: Connection, key_id: str) -> Row[Any] | None:
    """Any team's key, for the operator's command line, which acts for every team on this installation."""
    return conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()


def keys_in_team(conn: Connection, team_id: int | None) -> Sequence[Row[Any]]:
    """A team's keys, oldest first; ``team_id=None`` is the operator's view of every team."""
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if team_id is not None:
        query = query.where(api_keys.c.team_id == team_id)
    return conn.execute(query).fetchall()


def update_key(conn: Connection, key_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))


def record_use(conn: Connection, key_id: str, used_at: datetime, ip: str | None) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=used_at, last_used_ip=ip))
