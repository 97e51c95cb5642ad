"""Periodic upkeep run by the worker: drop finished IP blocks and failure records past their retention."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import Connection

from postroom.auth import queries as auth_queries
from postroom.core.clock import utcnow
from postroom.db.engine import Database
from postroom.emails import service as emails_service

FAILURE_RETENTION = timedelta(days=90)
log = logging.getLogger("postroom.maintenance")


def prune(conn: Connection) -> None:
    now = utcnow()
    auth_queries.delete_expired_blocks(conn, now)
    auth_queries.delete_failures_before(conn, now - FAILURE_RETENTION)
    emails_service.forget_expired_idempotency_keys(conn, now=now)


async def run_maintenance(db: Database, *, interval_seconds: float = 300) -> None:
    while True:
        try:
            await db.write(prune)
        except Exception:
            log.exception("maintenance failed; retrying at the next interval")
        await asyncio.sleep(interval_seconds)
