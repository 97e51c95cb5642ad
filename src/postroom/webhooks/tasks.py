"""Job handlers for ``WorkKind.WEBHOOK``: form batches from waiting events, deliver them, replay them.

Refs name the job: ``flush|<webhook id>`` turns up to 100 waiting events into a batch; ``deliver|<batch id>``
makes the batch's next scheduled attempt (retried through the work item, so the attempt's log row, the batch's
state and the endpoint's health commit with the item's outcome); ``replay|<batch id>`` makes one manual attempt.
All are safe to run twice: a batch that already succeeded is not sent again by its schedule.

A receiver that hangs must not take the worker with it: each process lets at most half of its worker slots
(``webhook_slots``) and ``PER_ENDPOINT`` of them per endpoint wait on webhook receivers. A delivery that finds no
free slot within ``SLOT_WAIT`` gives its work item back for a few seconds instead of holding a slot that mail
delivery needs; that does not count as an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import Connection

from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.db.engine import Database
from postroom.jobs.base import Handler, WorkItem, WorkKind, WorkResult
from postroom.messages import events
from postroom.webhooks import service
from postroom.webhooks.delivery import TOTAL_TIMEOUT, WebhookSender
from postroom.webhooks.schemas import batch_payload
from postroom.webhooks.signing import SIGNATURE_HEADER, signature_header
from postroom.webhooks.ssrf import HostResolver

log = logging.getLogger("postroom.webhooks")

PER_ENDPOINT = 4
SLOT_WAIT = 2.0
BUSY_RETRY = timedelta(seconds=5)
BATCH_ID_HEADER = "Lettr-Event-Batch-Id"
WEBHOOK_ID_HEADER = "Lettr-Webhook-Id"


class _Slots:
    """In-process limits on deliveries waiting for receivers: in all, and per endpoint."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._busy: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    def _free(self, webhook_id: str) -> bool:
        return sum(self._busy.values()) < self._total and self._busy[webhook_id] < PER_ENDPOINT

    @contextlib.asynccontextmanager
    async def hold(self, webhook_id: str, wait: float) -> AsyncIterator[bool]:
        """Yields True with a slot held, or False if none freed up within ``wait`` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._free(webhook_id)), wait)
            except TimeoutError:
                got = False
            else:
                got = True
                self._busy[webhook_id] += 1
        try:
            yield got
        finally:
            if got:
                async with self._changed:
                    self._busy[webhook_id] -= 1
                    if self._busy[webhook_id] <= 0:
                        del self._busy[webhook_id]
                    self._changed.notify_all()


class WebhookTasks:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._sender = WebhookSender(
            resolver=HostResolver(settings.dns_server), allow_private=settings.webhook_allow_private
        )
        self._slots: _Slots | None = None

    @property
    def slots(self) -> _Slots:
        if self._slots is None:  # created on the worker's event loop, where it is used
            self._slots = _Slots(max(1, self._settings.worker_concurrency // 2))
        return self._slots

    async def close(self) -> None:
        await self._sender.close()

    def handlers(self) -> dict[WorkKind, Handler]:
        return {WorkKind.WEBHOOK: self.run}

    async def run(self, item: WorkItem) -> WorkResult:
        job, _, ref = item.ref.partition("|")
        if job == service.FLUSH:
            return await self.flush(ref)
        if job in (service.DELIVER, service.REPLAY):
            return await self.deliver(ref, replay=job == service.REPLAY)
        log.error("unknown webhook job %r", item.ref)
        return WorkResult.done()

    async def flush(self, webhook_id: str) -> WorkResult:
        """Turn the endpoint's oldest waiting events into one batch, its body built outside the write."""
        for _ in range(3):
            if await self._flush_once(webhook_id):
                return WorkResult.done()
        return WorkResult.retry(utcnow() + service.BATCH_WINDOW, "events kept being taken by another flush")

    async def _flush_once(self, webhook_id: str) -> bool:
        """False when another flush took some of the events meanwhile (look again)."""
        claimed = await self._db.read(lambda conn: service.peek_pending_events(conn, webhook_id=webhook_id))
        now = utcnow()
        if claimed is None:
            await self._db.write(lambda conn: service.finish_empty_flush(conn, webhook_id=webhook_id, now=now))
            return True
        names = {e.event_id: e.event_name for e in claimed.events}
        team_id = claimed.webhook.team_id
        rows = await self._db.read(lambda conn: events.events_by_event_ids(conn, team_id, list(names)))
        body = batch_payload([(row, names[row.event_id]) for row in rows])
        try:
            await self._db.write(lambda conn: service.create_batch(conn, claimed=claimed, body=body, now=now))
        except service.StaleClaim:
            return False
        return True

    async def deliver(self, batch_id: str, *, replay: bool) -> WorkResult:
        now = utcnow()
        server_secret = self._settings.server_secret
        job = await self._db.read(
            lambda conn: service.delivery_job(conn, batch_id=batch_id, server_secret=server_secret, now=now)
        )
        if job is None:
            return WorkResult.done()
        if not replay and job.batch.status not in ("pending", "retrying"):
            return WorkResult.done()  # already settled: a second run of the same item sends nothing
        if not job.webhook.enabled:
            if replay:
                return WorkResult.done()
            return WorkResult.done(lambda conn: service.cancel_batch(conn, batch_id=batch_id, now=utcnow()))

        async with self.slots.hold(job.webhook.id, SLOT_WAIT) as got:
            if not got:
                return WorkResult.retry(utcnow() + BUSY_RETRY, "waiting for a free webhook delivery slot")
            started_at = utcnow()
            body = job.body
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(job.signing_secrets, int(time.time()), body),
                BATCH_ID_HEADER: job.batch.id,
                WEBHOOK_ID_HEADER: job.webhook.id,
            }
            result = await self._sender.post(job.webhook.url, body, headers, job.credentials, timeout=TOTAL_TIMEOUT)

        now = utcnow()
        attempt_number = job.batch.attempts + 1
        decision = service.decide(
            status_code=result.status_code,
            attempt=attempt_number,
            now=now,
            retry_scale=self._settings.webhook_retry_scale,
        )
        record = service.AttemptRecord(
            started_at=started_at,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            excerpt=result.excerpt,
            error=result.error,
        )

        def write(conn: Connection) -> None:
            service.record_attempt(conn, job=job, attempt=record, decision=decision, replay=replay, now=now)

        if result.success:
            return WorkResult.done(write)
        outcome = result.error or f"HTTP {result.status_code}"
        log.info("webhook %s batch %s attempt failed: %s", job.webhook.id, job.batch.id, outcome)
        if not replay and decision.step is service.Step.RETRY and decision.retry_at is not None:
            return WorkResult.retry(decision.retry_at, outcome[:1000], write)
        return WorkResult.done(write)
