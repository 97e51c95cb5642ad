"""Rate-limit counters shared by every API process on one PostgreSQL database (``postroom.auth.ratelimit``).

One row per team and limit: the count in the current fixed window and when that window ends. The row is reused
when its window has ended, so the table holds (teams × configured limits) rows. On PostgreSQL it is created
UNLOGGED: a counter lost in a crash only forgives a few requests, and no WAL flush sits on the request path.
``expires_at`` is seconds since the epoch by the database's clock, so processes with skewed clocks still agree.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table

from postroom.models.types import metadata

rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
)
