"""SQL for the system routes."""

from __future__ import annotations

from sqlalchemy import Connection, text


def database_answers(conn: Connection) -> bool:
    """The cheapest round trip that proves the database accepts queries."""
    return bool(conn.execute(text("SELECT 1")).scalar() == 1)
