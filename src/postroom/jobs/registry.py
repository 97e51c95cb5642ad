"""Which dispatcher runs the outbox: the embedded loop on SQLite, pgqueuer on PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from postroom.config import Settings
from postroom.db.engine import Database
from postroom.jobs.base import Dispatcher, Handler, WorkKind
from postroom.jobs.embedded import EmbeddedDispatcher


def make_dispatcher(
    db: Database,
    settings: Settings,
    handlers: Mapping[WorkKind, Handler],
    *,
    reconcile_interval: timedelta | None = None,
) -> Dispatcher:
    lease = timedelta(seconds=settings.worker_lease_seconds)
    give_up_after = timedelta(seconds=settings.worker_reconnect_seconds)
    if db.dialect == "postgresql":
        from postroom.jobs.pgqueuer import RECONCILE_INTERVAL, PgQueuerDispatcher

        dsn = settings.effective_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        return PgQueuerDispatcher(
            db,
            handlers,
            dsn=dsn,
            concurrency=settings.worker_concurrency,
            lease=lease,
            reconcile_interval=reconcile_interval or RECONCILE_INTERVAL,
            connect_timeout=settings.database_connect_timeout_seconds,
            give_up_after=give_up_after,
        )
    return EmbeddedDispatcher(
        db, handlers, concurrency=settings.worker_concurrency, lease=lease, give_up_after=give_up_after
    )
