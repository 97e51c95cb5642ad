"""Failed authentication attempts and the IP blocks they lead to.

Kept in the database, not in memory, so the lockout holds across every process and the dashboard can show it.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table

from postroom.models.types import UTCDateTime, metadata

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("ip", String(45), nullable=True),
    Column("key_prefix", String(20), nullable=True),
    Column("api_key_id", String(40), nullable=True),
    Column("team_id", Integer, nullable=True),
    Column("reason", String(32), nullable=False),
    Column("counts_toward_lockout", Boolean, nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", String(255), nullable=False),
    Column("user_agent", String(255), nullable=True),
    Index("ix_auth_failures_ip_occurred_at", "ip", "occurred_at"),
    Index("ix_auth_failures_occurred_at", "occurred_at"),
)

auth_blocks = Table(
    "auth_blocks",
    metadata,
    Column("ip", String(45), primary_key=True),
    Column("blocked_until", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
