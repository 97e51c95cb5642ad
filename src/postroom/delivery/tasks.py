"""Job handlers: deliver a message to one recipient domain; release a scheduled send.

Handlers carry ids, re-load what they need and are safe to run twice: a recipient's status only moves forward
(queued → deferred → delivered | bounced), so a second run after a crash re-sends only to recipients whose outcome
was never recorded, with the same Message-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dns.asyncresolver
from sqlalchemy import Connection

from postroom.config import Settings
from postroom.core import dkim
from postroom.core.clock import utcnow
from postroom.core.resolver import make_resolver
from postroom.db.engine import Database
from postroom.delivery import retry
from postroom.delivery.classify import Outcome, OutcomeKind
from postroom.delivery.destinations import DestinationBusy, Destinations
from postroom.delivery.render import inline_styles, render
from postroom.delivery.return_path import envelope_sender
from postroom.delivery.smtp_session import ConnectionPool, Route, SessionResult, deliver
from postroom.delivery.smtp_session import route as smtp_route
from postroom.domains import service as domains_service
from postroom.emails import queries as email_queries
from postroom.emails import service as emails_service
from postroom.emails.service import EventType
from postroom.errors import PostroomError
from postroom.inbox import service as inbox_service
from postroom.jobs.base import Handler, WorkItem, WorkKind, WorkResult
from postroom.messages.request import SendRequest
from postroom.templates import rendering
from postroom.tracking import rewriting
from postroom.webhooks import service as webhooks_service

log = logging.getLogger("postroom.delivery")

SIGNING_THREADS = 2
SIGNING_KEY_SECONDS = 10.0
BUSY_RETRY = timedelta(seconds=15)
"""When a delivery is postponed because its destination is at its cap and its line is full."""


@dataclass(frozen=True, slots=True)
class _Pending:
    message: Any
    recipients: list[Any]
    dkim_key: dkim.DkimKey | None
    tracking_base: str
    """Where this message's open and click links point (the domain's verified tracking domain, else ours)."""


class DeliveryTasks:
    def __init__(self, db: Database, settings: Settings, *, wake: Callable[[], None] | None = None) -> None:
        self._db = db
        self._settings = settings
        self._resolver: dns.asyncresolver.Resolver = make_resolver(settings.dns_server)
        self._pool = ConnectionPool(settings)
        self._destinations = Destinations(settings)
        self._wake = wake or (lambda: None)
        self._signing_keys: dict[tuple[int, str], tuple[float, dkim.DkimKey | None, str]] = {}
        self._signer = ThreadPoolExecutor(max_workers=SIGNING_THREADS, thread_name_prefix="postroom-dkim")

    async def close(self) -> None:
        """Say goodbye to the mail servers whose sessions are still open."""
        await self._pool.close()
        self._signer.shutdown(wait=True)

    def _signing_key(self, conn: Connection, team_id: int, domain: str) -> tuple[dkim.DkimKey | None, str]:
        """The domain's current DKIM key and tracking base URL, read at most every ``SIGNING_KEY_SECONDS`` per
        domain. A key that has just been rotated out still verifies: its DNS record stays published for days
        (``domains.service``)."""
        now = time.monotonic()
        cached = self._signing_keys.get((team_id, domain))
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        sending = domains_service.find_domain(conn, team_id=team_id, name=domain)
        key = sending.signing_key(self._settings.server_secret) if sending else None
        base = domains_service.tracking_base(sending, self._settings)
        self._signing_keys[(team_id, domain)] = (now + SIGNING_KEY_SECONDS, key, base)
        return key, base

    async def _signed(self, raw: bytes, key: dkim.DkimKey | None) -> bytes:
        """The message with its DKIM signature on top. The RSA operation (most of the cost) releases the GIL, so
        signing runs on a thread of its own while the event loop renders and sends the next message."""
        if key is None:
            return raw
        signature = await asyncio.get_running_loop().run_in_executor(self._signer, dkim.sign, raw, key)
        return signature + raw

    def handlers(self) -> dict[WorkKind, Handler]:
        return {WorkKind.DELIVER: self.deliver, WorkKind.RELEASE_SCHEDULED: self.release_scheduled}

    async def deliver(self, item: WorkItem) -> WorkResult:
        message_id, domain = item.ref.split("|", 1)

        def load(conn: Connection) -> _Pending | None:
            message = email_queries.message_by_id(conn, message_id)
            if message is None:
                return None
            pending = list(email_queries.pending_recipients(conn, message_id, domain))
            return _Pending(message, pending, *self._signing_key(conn, message.team_id, message.sending_domain))

        pending = await self._db.read(load)
        if pending is None or not pending.recipients:
            return WorkResult.done()
        message = pending.message
        request = SendRequest.from_json(message.content)
        route = None if message.sandbox else await smtp_route(domain, self._settings, self._resolver)
        captured: list[dict[str, Any]] = []  # a sandbox message's inbox rows, written with its delivery events
        try:
            async with self._destination(route):
                result, not_generated = await self._send(pending, request, domain, route, captured)
        except DestinationBusy as busy:
            return WorkResult.retry(utcnow() + BUSY_RETRY, str(busy))
        now = utcnow()
        recipients = [r for r in pending.recipients if r.email not in not_generated]

        def record(conn: Connection) -> None:
            counts = emails_service.EventCounts()
            inbox_service.store(conn, captured)
            self._record(conn, message, recipients, result, now, counts)
            self._record_not_generated(conn, message, pending.recipients, not_generated, now, counts)
            counts.write(conn)

        if not self._must_retry(message, result, now):
            return WorkResult.done(record)
        retry_at = retry.next_attempt(
            attempts=item.attempts,
            now=now,
            base_seconds=self._settings.retry_base_seconds,
            max_seconds=self._settings.retry_max_seconds,
        )
        failures = "; ".join(f"{r}: {o.reason}" for r, o in result.failed.items())
        return WorkResult.retry(retry_at, failures[:1000], record)

    def _destination(self, route: Route | None) -> contextlib.AbstractAsyncContextManager[None]:
        """A slot of the route's destination (none is needed for the inbox, or when DNS gave no server)."""
        if route is None or route.failure is not None:
            return contextlib.nullcontext()
        return self._destinations.slot(route.destination, relay=route.relay)

    async def _send(
        self,
        pending: _Pending,
        request: SendRequest,
        domain: str,
        route: Route | None,
        captured: list[dict[str, Any]],
    ) -> tuple[SessionResult, dict[str, str]]:
        """Send to the pending recipients; returns the outcome and the recipients whose message could not be
        rendered."""
        if rendering.personalises(request) or rewriting.tracks(request):  # every recipient gets their own
            return await self._deliver_personalised(pending, request, domain, route, captured)
        message = pending.message
        raw = render(inline_styles(request), message_id_header=message.message_id_header, created_at=message.created_at)
        signed = await self._signed(raw, pending.dkim_key)
        return await self._transmit(message, pending.recipients, signed, domain, route, captured), {}

    async def _transmit(
        self,
        message: Any,
        recipients: list[Any],
        signed: bytes,
        domain: str,
        route: Route | None,
        captured: list[dict[str, Any]],
    ) -> SessionResult:
        """Hand the signed message to the recipients' mail server, or, for a sandbox message (``route`` None),
        capture a copy per recipient for the local inbox (``captured``): every recipient is then delivered, none
        ever bounces."""
        senders = {r.email: envelope_sender(self._settings, r.id) for r in recipients}
        if route is None:
            for recipient in recipients:
                captured.append(
                    inbox_service.capture_row(
                        team_id=message.team_id,
                        message_id=message.id,
                        recipient=recipient,
                        envelope_from=senders[recipient.email],
                        raw=signed,
                        now=utcnow(),
                    )
                )
            return SessionResult(delivered=[r.email for r in recipients])
        return await deliver(
            message=signed,
            envelope_from=senders,
            recipients=[r.email for r in recipients],
            domain=domain,
            route=route,
            pool=self._pool,
        )

    async def _deliver_personalised(
        self,
        pending: _Pending,
        request: SendRequest,
        domain: str,
        route: Route | None,
        captured: list[dict[str, Any]],
    ) -> tuple[SessionResult, dict[str, str]]:
        """Render, sign and send the message once per recipient (one SMTP transaction each, on pooled sessions):
        their template substitutions, then the CSS inlining, then their own tracking links and pixel.

        Returns the combined outcome and, by address, the recipients whose message could not be rendered (a
        render limit was exceeded): those are final failures, never retried.
        """
        message = pending.message
        combined = SessionResult()
        tls_used: list[bool] = []
        not_generated: dict[str, str] = {}
        templated = rendering.personalises(request)
        try:
            compiled = rendering.compile_send(request) if templated else None
        except rendering.GenerationFailed as failed:
            return combined, {r.email: failed.reason for r in pending.recipients}
        for recipient in pending.recipients:
            try:
                personal = request if compiled is None else rendering.personalise(compiled, recipient.email)
            except rendering.GenerationFailed as failed:
                not_generated[recipient.email] = failed.reason
                continue
            personal = inline_styles(personal)
            if rewriting.tracks(personal):
                personal = rewriting.instrument(
                    personal, base=pending.tracking_base, secret=self._settings.server_secret, recipient_id=recipient.id
                )
            raw = render(personal, message_id_header=message.message_id_header, created_at=message.created_at)
            signed = await self._signed(raw, pending.dkim_key)
            result = await self._transmit(message, [recipient], signed, domain, route, captured)
            combined.delivered.extend(result.delivered)
            combined.failed.update(result.failed)
            if result.delivered:
                tls_used.append(result.tls)
        combined.tls = bool(tls_used) and all(tls_used)
        return combined, not_generated

    def _record_not_generated(
        self,
        conn: Connection,
        message: Any,
        recipients: list[Any],
        reasons: dict[str, str],
        now: datetime,
        counts: emails_service.EventCounts,
    ) -> None:
        """A recipient whose message could not be rendered fails for good with a ``generation_failure`` event."""
        for recipient in recipients:
            reason = reasons.get(recipient.email)
            if reason is None or not email_queries.move_recipient(conn, recipient.id, "failed", now=now, error=reason):
                continue
            details = {"reason": reason, "raw_reason": reason, "error_code": "554"}
            emails_service.record_recipient_event(
                conn, recipient, EventType.GENERATION_FAILURE, now, details, counts=counts
            )

    def _expired(self, message: Any, now: datetime) -> bool:
        return retry.expired(
            created_at=message.created_at, now=now, lifetime_seconds=self._settings.delivery_lifetime_seconds
        )

    def _must_retry(self, message: Any, result: SessionResult, now: datetime) -> bool:
        """Whether some recipient failed temporarily and the message is still within its delivery lifetime."""
        temporary = any(o.kind is OutcomeKind.TEMPORARY for o in result.failed.values())
        return temporary and not self._expired(message, now)

    def _record(
        self,
        conn: Connection,
        message: Any,
        recipients: list[Any],
        result: SessionResult,
        now: datetime,
        counts: emails_service.EventCounts,
    ) -> None:
        """Write each recipient's outcome and event (deferred recipients come back with the work item's retry)."""
        queue_time = int((now - message.created_at).total_seconds() * 1000)
        expired = self._expired(message, now)
        fanout = webhooks_service.EventFanout(conn, message.team_id)
        for recipient in recipients:
            common = {"num_retries": recipient.attempts}
            if recipient.email in result.delivered:
                if email_queries.move_recipient(conn, recipient.id, "delivered", now=now, error=None):
                    delivered = {**common, "queue_time": queue_time, "outbound_tls": "1" if result.tls else "0"}
                    emails_service.record_recipient_event(
                        conn, recipient, EventType.DELIVERY, now, delivered, fanout=fanout, counts=counts
                    )
                continue
            outcome: Outcome = result.failed.get(recipient.email) or Outcome(
                kind=OutcomeKind.TEMPORARY, bounce_class=1, suppress=False, enhanced_status=None, reason="no reply"
            )
            details = {
                **common,
                "reason": outcome.reason,
                "raw_reason": outcome.raw or outcome.reason,
                "error_code": str(outcome.code) if outcome.code is not None else "",
            }
            if outcome.kind is OutcomeKind.TEMPORARY and not expired:
                if email_queries.move_recipient(conn, recipient.id, "deferred", now=now, error=outcome.reason):
                    delayed = {**details, "queue_time": queue_time}
                    emails_service.record_recipient_event(
                        conn,
                        recipient,
                        EventType.DELAY,
                        now,
                        delayed,
                        outcome.bounce_class,
                        fanout=fanout,
                        counts=counts,
                    )
                continue
            if outcome.kind is OutcomeKind.TEMPORARY:
                details["reason"] = f"Delivery time expired after {recipient.attempts + 1} attempts: {outcome.reason}"
            if email_queries.move_recipient(conn, recipient.id, "bounced", now=now, error=outcome.reason):
                emails_service.record_recipient_event(
                    conn, recipient, EventType.BOUNCE, now, details, outcome.bounce_class, fanout=fanout, counts=counts
                )
                if outcome.suppress:
                    emails_service.suppress(
                        conn,
                        team_id=message.team_id,
                        email=recipient.email,
                        reason="hard_bounce",
                        source=f"{message.request_id}: {outcome.reason}"[:500],
                        now=now,
                    )

    async def release_scheduled(self, item: WorkItem) -> WorkResult:
        """Turn a scheduled send into a transmission at its time; a send that can no longer go out is ``failed``."""
        scheduled_id = item.ref
        settings = self._settings

        def release(conn: Connection) -> bool:
            row = emails_service.scheduled_for_release(conn, scheduled_id)
            if row is None or row.state != "scheduled":
                return False
            now = utcnow()
            try:
                accepted = emails_service.accept(
                    conn,
                    team_id=row.team_id,
                    api_key_id=row.api_key_id,
                    request=SendRequest.from_json(row.content),
                    now=now,
                    mail_hostname=settings.mail_hostname,
                    scheduled_id=row.id,
                    sandbox=email_queries.key_is_sandbox(conn, row.api_key_id),
                )
            except PostroomError as error:
                emails_service.mark_scheduled(
                    conn, row.id, {"state": "failed", "failure_reason": error.message, "updated_at": now}
                )
                return False
            emails_service.mark_scheduled(
                conn,
                row.id,
                {
                    "state": "sent",
                    "transmission_id": accepted.request_id,
                    "accepted": accepted.accepted,
                    "rejected": accepted.rejected,
                    "updated_at": now,
                },
            )
            return True

        if await self._db.write(release):
            self._wake()
        return WorkResult.done()
