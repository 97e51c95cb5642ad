"""Periodic upkeep run by the worker: drop finished IP blocks, failure records and sign-in attempts past their
retention, queue webhook events whose batch-forming work item was missed, restart any domain's lost chain of
periodic DNS checks, and keep the local inbox within its configured age and count."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import Connection

from postroom.auth import queries as auth_queries
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.dashboard import accounts as dashboard_accounts
from postroom.db.engine import Database
from postroom.domains import service as domains_service
from postroom.emails import service as emails_service
from postroom.inbox import service as inbox_service
from postroom.webhooks import service as webhooks_service

FAILURE_RETENTION = timedelta(days=90)
log = logging.getLogger("postroom.maintenance")


def prune(conn: Connection, settings: Settings | None = None) -> None:
    now = utcnow()
    auth_queries.delete_expired_blocks(conn, now)
    auth_queries.delete_failures_before(conn, now - FAILURE_RETENTION)
    emails_service.forget_expired_idempotency_keys(conn, now=now)
    webhooks_service.sweep_stranded(conn, now=now)
    dashboard_accounts.forget_old_attempts(conn, now=now)
    if settings is not None:
        domains_service.ensure_rechecks(conn, settings=settings, now=now)
        inbox_service.prune(conn, settings=settings, now=now)


async def run_maintenance(db: Database, settings: Settings | None = None, *, interval_seconds: float = 300) -> None:
    while True:
        try:
            await db.write(lambda conn: prune(conn, settings))
        except Exception:
            log.exception("maintenance failed; retrying at the next interval")
        await asyncio.sleep(interval_seconds)
