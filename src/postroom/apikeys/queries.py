"""Every SQL statement about API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from postroom.models import api_key_ips, api_keys


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


def note_address(conn: Connection, key_id: str, ip: str, seen_at: datetime) -> None:
    """Remember that the key was used from ``ip`` (the first time only), for the dashboard's new-address feed."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    source = select(api_keys.c.id, literal(ip), api_keys.c.team_id, literal(seen_at, api_key_ips.c.first_seen_at.type))
    statement = insert(api_key_ips).from_select(
        ["api_key_id", "ip", "team_id", "first_seen_at"], source.where(api_keys.c.id == key_id)
    )
    conn.execute(statement.on_conflict_do_nothing(index_elements=["api_key_id", "ip"]))
