"""Checking a domain's DNS: on request (``POST /domains/{domain}/verify``, ``postroom domains verify``) and
periodically, as a ``verify_domain`` work item per domain that re-enqueues itself after each check."""

from __future__ import annotations

from datetime import timedelta

import dns.asyncresolver
from sqlalchemy import Connection

from postroom.audit.service import Actor
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.core.resolver import make_resolver
from postroom.db.engine import Database
from postroom.domains import records, service
from postroom.domains.records import SpfPolicy
from postroom.domains.service import SendingDomain
from postroom.domains.verification import Verification, verify_records
from postroom.jobs.base import Handler, WorkItem, WorkKind, WorkResult


class DomainChecks:
    def __init__(self, db: Database, settings: Settings, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self._db = db
        self._settings = settings
        self._resolver = resolver or make_resolver(settings.dns_server)
        self._grace = timedelta(seconds=settings.domain_grace_seconds)

    def handlers(self) -> dict[WorkKind, Handler]:
        return {WorkKind.VERIFY_DOMAIN: self.recheck}

    async def lookup(self, domain: SendingDomain) -> Verification:
        """What DNS serves for ``domain`` now, judged against what it should serve."""
        next_dkim = None
        if domain.next_dkim_record_name is not None and domain.dkim_next_public_key is not None:
            next_dkim = (domain.next_dkim_record_name, records.dkim_public_key(domain.dkim_next_public_key))
        return await verify_records(
            self._resolver,
            domain=domain.domain,
            dkim_name=domain.dkim_record_name,
            dkim_public_key=domain.dkim_public,
            bounce_host=self._settings.bounce_host,
            spf_policy=SpfPolicy.from_settings(self._settings),
            next_dkim=next_dkim,
            tracking=None
            if domain.tracking_domain is None
            else (domain.tracking_domain, service.tracking_target(self._settings)),
        )

    async def verify(self, *, team_id: int, name: str, actor: Actor) -> tuple[SendingDomain, Verification]:
        """Check DNS now and record the outcome (an audit event of ``actor``); 404 for a domain the team lacks."""
        domain = await self._db.read(lambda conn: service.get_domain(conn, team_id=team_id, name=name))
        result = await self.lookup(domain)

        def record(conn: Connection) -> SendingDomain:
            # Re-read inside the write: a rotation or approval may have happened during the lookup.
            current = service.get_domain(conn, team_id=team_id, name=name)
            return service.record_verification(
                conn, domain=current, result=result, now=utcnow(), grace=self._grace, actor=actor
            )

        return await self._db.write(record), result

    async def recheck(self, item: WorkItem) -> WorkResult:
        domain = await self._db.read(lambda conn: service.domain_by_id(conn, item.ref))
        if domain is None:
            return WorkResult.done()  # deleted: its chain of checks ends here
        result = await self.lookup(domain)

        def record(conn: Connection) -> None:
            current = service.domain_by_id(conn, item.ref)
            if current is None:
                return
            now = utcnow()
            service.record_verification(conn, domain=current, result=result, now=now, grace=self._grace)
            service.schedule_recheck(conn, domain_id=current.id, settings=self._settings, now=now)

        return WorkResult.done(record=record)
