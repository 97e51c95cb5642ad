"""Webhooks: managing endpoints, turning recorded email events into batches, and deciding what a delivery means.

Fan-out runs inside the transaction that records an email event (``EventFanout``): each enabled endpoint
of the team that subscribes to the event's canonical type gets a pending ``webhook_events`` row, so an event and
the promise to send it commit together. Pending events become batches of up to ``BATCH_SIZE`` (or whatever
arrived within ``BATCH_WINDOW``) when the endpoint's *flush* work item runs; each batch is then its own *deliver*
work item, retried along ``RETRY_DELAYS``. ``webhooks.flush_at`` records when the queued flush runs, so a
recorder adds a flush item only when none is due far enough ahead to see its event; ``sweep_stranded`` (run by
maintenance) catches the rare event committed after its flush already ran.

Signing secrets and credentials are sealed with the server secret, each with its own purpose, and are opened
only to sign and to authenticate a delivery (and for the dashboard, which shows the current secret).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import Connection, Row

from postroom.audit.service import Actor
from postroom.core.crypto import SecretBox
from postroom.core.ids import new_id
from postroom.errors import (
    ResourceAlreadyExists,
    ValidationFailed,
    WebhookConflict,
    WebhookDeliveryNotFound,
    WebhookNotFound,
)
from postroom.jobs.base import WorkKind, enqueue
from postroom.webhooks import queries
from postroom.webhooks.delivery import Credentials
from postroom.webhooks.schemas import (
    AUTH_FIELDS,
    FieldErrors,
    WebhookChanges,
    WebhookInput,
    canonical_for_type,
    complete_credentials,
    webhook_body,
)
from postroom.webhooks.signing import new_secret
from postroom.webhooks.ssrf import Target

BATCH_SIZE = 100
BATCH_WINDOW = timedelta(seconds=1)
FLUSH_MARGIN = timedelta(milliseconds=250)
"""A recorder relies on a queued flush only if it runs at least this far ahead; otherwise it queues another."""
STRANDED_AFTER = timedelta(seconds=30)

RETRY_DELAYS = (60, 300, 1800, 7200, 28800, 86400)
"""Seconds to wait after failed attempt 1, 2, …: attempts at 0, +1 m, +5 m, +30 m, +2 h, +8 h, +24 h (34.6 h)."""
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
AUTO_DISABLE_AFTER = timedelta(days=5)
"""An endpoint that has failed every delivery for this long is disabled and the team alerted."""

DUPLICATE_URL = "A webhook with this target URL already exists."
CREDENTIALS_PURPOSE = "webhook-credentials"
SIGNING_SECRET_PURPOSE = "webhook-signing-secret"  # noqa: S105 - a key-derivation label, not a secret

FLUSH, DELIVER, REPLAY = "flush", "deliver", "replay"
"""The three jobs behind ``WorkKind.WEBHOOK``; a work item's ref is ``<job>|<webhook or batch id>``."""


def _boxes(server_secret: bytes) -> tuple[SecretBox, SecretBox]:
    return SecretBox(server_secret, CREDENTIALS_PURPOSE), SecretBox(server_secret, SIGNING_SECRET_PURPOSE)


def new_webhook_id() -> str:
    """``webhook-`` and a ULID-style random id, the shape Lettr's webhook ids have."""
    return "webhook-" + new_id("w").split("_", 1)[1]


def url_key(target: Target) -> str:
    return hashlib.sha256(target.url.encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def _filter(event_types: str) -> frozenset[str]:
    """The event names an endpoint's stored filter (a JSON list) lets through; every event asks."""
    return frozenset(msgspec.json.decode(event_types))


def _encode_types(event_types: list[str] | None) -> str | None:
    return msgspec.json.encode(event_types).decode() if event_types is not None else None


# -- management -----------------------------------------------------------------------------------------------


def list_webhooks(conn: Connection, *, team_id: int) -> Sequence[Row[Any]]:
    return queries.webhooks_of_team(conn, team_id)


def get_webhook(conn: Connection, *, team_id: int, webhook_id: str) -> Row[Any]:
    row = queries.webhook_in_team(conn, team_id, webhook_id)
    if row is None:
        raise WebhookNotFound()
    return row


_AUDITED_FIELDS = ("name", "url", "enabled", "event_types", "auth_type", "has_auth_credentials")


def _audit_view(row: Row[Any]) -> dict[str, Any]:
    """What the audit log keeps of an endpoint: part of what the API shows, never a secret or credential value."""
    body = webhook_body(row)
    return {name: body[name] for name in _AUDITED_FIELDS}


def _target(webhook_id: str) -> str:
    return f"webhook:{webhook_id}"


def _refuse_duplicate(conn: Connection, team_id: int, key: str, webhook_id: str | None = None) -> None:
    existing = queries.webhook_with_url_key(conn, team_id, key)
    if existing is not None and existing.id != webhook_id:
        raise ResourceAlreadyExists(DUPLICATE_URL)


def create_webhook(
    conn: Connection, *, team_id: int, data: WebhookInput, server_secret: bytes, actor: Actor, now: datetime
) -> tuple[Row[Any], str]:
    """The new endpoint and its signing secret (returned this once); 409 when the team has the URL already."""
    key = url_key(data.target)
    _refuse_duplicate(conn, team_id, key)
    credentials_box, secret_box = _boxes(server_secret)
    secret = new_secret()
    webhook_id = new_webhook_id()
    queries.insert_webhook(
        conn,
        {
            "id": webhook_id,
            "team_id": team_id,
            "name": data.name,
            "url": data.target.url,
            "url_key": key,
            "enabled": True,
            "event_types": _encode_types(data.event_types),
            "auth_type": data.auth_type,
            "auth_credentials": (
                credentials_box.seal(msgspec.json.encode(data.credentials).decode()) if data.credentials else None
            ),
            "signing_secret": secret_box.seal(secret),
            "created_at": now,
            "updated_at": now,
        },
    )
    row = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    actor.record(
        conn, team_id=team_id, action="webhook.created", target=_target(webhook_id), new=_audit_view(row), now=now
    )
    return row, secret


def _stop_deliveries(conn: Connection, webhook_id: str, now: datetime, reason: str) -> None:
    """A disabled endpoint gets nothing more: waiting events are dropped, open batches cancelled."""
    queries.drop_pending_events(conn, webhook_id)
    queries.cancel_open_batches(conn, webhook_id, now, reason)
    queries.clear_flush(conn, webhook_id)


def update_webhook(
    conn: Connection,
    *,
    team_id: int,
    webhook_id: str,
    changes: WebhookChanges,
    server_secret: bytes,
    actor: Actor,
    now: datetime,
) -> Row[Any]:
    """Apply a partial update; credentials given for the current ``auth_type`` are merged with the stored ones.

    The audit entry says the credentials changed (``credentials_changed``), never what they are.
    """
    row = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    values: dict[str, Any] = {}
    credentials_changed = False
    if changes.name is not None:
        values["name"] = changes.name
    if changes.target is not None:
        key = url_key(changes.target)
        _refuse_duplicate(conn, team_id, key, webhook_id)
        values.update(url=changes.target.url, url_key=key)
    if changes.auth_type is not None or changes.credentials:
        auth_type = changes.auth_type or row.auth_type
        credentials_box, _ = _boxes(server_secret)
        stored: dict[str, str] = {}
        if row.auth_type == auth_type and row.auth_credentials:
            stored = msgspec.json.decode(credentials_box.open(row.auth_credentials))
        given = {k: v for k, v in changes.credentials.items() if k in AUTH_FIELDS.get(auth_type, ())}
        errors = FieldErrors()
        credentials = complete_credentials(auth_type, {**stored, **given}, errors)
        if errors.errors:
            raise ValidationFailed(errors.errors)
        # Compared in clear (a re-sealed copy of the same values differs byte for byte); only the fact is recorded.
        credentials_changed = credentials != stored or (auth_type != row.auth_type and row.auth_credentials is not None)
        values["auth_type"] = auth_type
        values["auth_credentials"] = (
            credentials_box.seal(msgspec.json.encode(credentials).decode()) if credentials else None
        )
    if changes.event_types_given:
        values["event_types"] = _encode_types(changes.event_types)
    if changes.enabled is not None and changes.enabled != bool(row.enabled):
        values["enabled"] = changes.enabled
        if changes.enabled:
            values.update(failing_since=None, disabled_reason=None)
        else:
            values["disabled_reason"] = "Disabled through the API."
            _stop_deliveries(conn, webhook_id, now, "The webhook was disabled.")
    values["updated_at"] = now
    queries.update_webhook(conn, team_id, webhook_id, values)
    after = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    actor.record_change(
        conn,
        team_id=team_id,
        action="webhook.updated",
        target=_target(webhook_id),
        old={**_audit_view(row), "credentials_changed": False},
        new={**_audit_view(after), "credentials_changed": credentials_changed},
        now=now,
    )
    return after


def delete_webhook(conn: Connection, *, team_id: int, webhook_id: str, actor: Actor, now: datetime) -> None:
    """Delete the endpoint with its waiting events, batches and log; queued work items then find nothing."""
    row = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    if not queries.delete_webhook(conn, team_id, webhook_id):
        raise WebhookNotFound()
    actor.record(
        conn, team_id=team_id, action="webhook.deleted", target=_target(webhook_id), old=_audit_view(row), now=now
    )


def rotate_secret(
    conn: Connection,
    *,
    team_id: int,
    webhook_id: str,
    overlap: timedelta,
    force: bool,
    server_secret: bytes,
    actor: Actor,
    now: datetime,
) -> tuple[Row[Any], str]:
    """A new signing secret; the old one keeps signing (a second ``v1``) for ``overlap``.

    A second rotation while an overlap is open would silently drop a secret receivers may still hold, so it is
    refused (409) unless ``force``.
    """
    row = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    expires = row.previous_secret_expires_at
    if row.previous_signing_secret is not None and expires is not None and expires > now and not force:
        raise WebhookConflict(
            f"A secret rotation is already in progress until {expires.isoformat(timespec='seconds')}; "
            "pass force to rotate again or expire the previous secret first."
        )
    _, secret_box = _boxes(server_secret)
    secret = new_secret()
    keep_previous = overlap > timedelta(0)
    queries.update_webhook(
        conn,
        team_id,
        webhook_id,
        {
            "signing_secret": secret_box.seal(secret),
            "previous_signing_secret": row.signing_secret if keep_previous else None,
            "previous_secret_expires_at": now + overlap if keep_previous else None,
            "updated_at": now,
        },
    )
    actor.record(
        conn,
        team_id=team_id,
        action="webhook.secret_rotated",
        target=_target(webhook_id),
        new={
            "previous_secret_signs_until": (now + overlap).isoformat() if keep_previous else None,
            "forced": force,
        },
        now=now,
    )
    return get_webhook(conn, team_id=team_id, webhook_id=webhook_id), secret


def expire_previous_secret(conn: Connection, *, team_id: int, webhook_id: str, actor: Actor, now: datetime) -> Row[Any]:
    """End a rotation's overlap now: only the current secret signs from the next delivery on."""
    row = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    expires = row.previous_secret_expires_at
    actor.record(
        conn,
        team_id=team_id,
        action="webhook.previous_secret_expired",
        target=_target(webhook_id),
        old={"previous_secret_signs_until": expires.isoformat() if expires else None},
        new={"previous_secret_signs_until": None},
        now=now,
    )
    queries.update_webhook(
        conn,
        team_id,
        webhook_id,
        {"previous_signing_secret": None, "previous_secret_expires_at": None, "updated_at": now},
    )
    return get_webhook(conn, team_id=team_id, webhook_id=webhook_id)


def signing_secret(conn: Connection, *, team_id: int, webhook_id: str, server_secret: bytes) -> str:
    """The current signing secret, for the dashboard (the API shows it only on create and rotate)."""
    row = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    return _boxes(server_secret)[1].open(row.signing_secret)


def list_deliveries(
    conn: Connection, *, team_id: int, webhook_id: str, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], dict[str, list[Row[Any]]], int]:
    """A page of the endpoint's batches (newest first), each with its attempts, and the total."""
    get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    batches, total = queries.batches_page(conn, team_id, webhook_id, offset=offset, limit=limit)
    attempts: dict[str, list[Row[Any]]] = {b.id: [] for b in batches}
    for attempt in queries.attempts_of(conn, team_id, [b.id for b in batches]):
        attempts[attempt.batch_id].append(attempt)
    return batches, attempts, total


def replay_delivery(
    conn: Connection, *, team_id: int, webhook_id: str, delivery_id: str, actor: Actor, now: datetime
) -> Row[Any]:
    """Send a batch once more, now, with the same body and batch id and a fresh signature."""
    webhook = get_webhook(conn, team_id=team_id, webhook_id=webhook_id)
    batch = queries.batch_in_team(conn, team_id, webhook_id, delivery_id)
    if batch is None:
        raise WebhookDeliveryNotFound()
    if not webhook.enabled:
        raise WebhookConflict("The webhook is disabled; enable it before replaying a delivery.")
    enqueue(conn, kind=WorkKind.WEBHOOK, ref=f"{REPLAY}|{batch.id}", run_at=now, now=now)
    actor.record(
        conn,
        team_id=team_id,
        action="webhook.delivery_replayed",
        target=f"webhook_delivery:{batch.id}",
        new={"webhook": webhook_id, "status": batch.status},
        now=now,
    )
    return batch


def list_alerts(conn: Connection, *, team_id: int, limit: int = 50) -> Sequence[Row[Any]]:
    """The team's webhook alerts, newest first (endpoints disabled by a 410 or by five days of failures)."""
    return queries.alerts_of(conn, team_id, limit)


# -- fan-out ----------------------------------------------------------------------------------------------------


class EventFanout:
    """Webhook work for the email events one unit of work records, for one team.

    The team's enabled endpoints are read at the first event and kept for the rest: a send to 50 recipients records
    50 ``injection`` events, and a delivery one event per recipient. What the transaction learns of each endpoint's
    next flush is kept too: once a flush is queued, or found already due far enough ahead, later events of the same
    unit of work rely on it. (A flush that runs meanwhile and misses them is what ``sweep_stranded`` catches, as for
    a single event committed after its flush ran.)
    """

    __slots__ = ("_conn", "_team_id", "_endpoints", "_due")

    def __init__(self, conn: Connection, team_id: int) -> None:
        self._conn = conn
        self._team_id = team_id
        self._endpoints: Sequence[Any] | None = None
        self._due: dict[str, datetime] = {}
        """By endpoint id: a time its next flush is known to run at or after."""

    def record(self, *, event_id: str, event_type: str, now: datetime) -> None:
        """Queue ``event_id`` for every enabled endpoint subscribed to its type, in the caller's transaction."""
        if self._endpoints is None:
            self._endpoints = queries.enabled_webhooks(self._conn, self._team_id)
            self._due = {e.id: e.flush_at for e in self._endpoints if e.flush_at is not None}
        if not self._endpoints:
            return
        name = canonical_for_type(event_type)
        subscribed = [e.id for e in self._endpoints if e.event_types is None or name in _filter(e.event_types)]
        if not subscribed:
            return
        queries.insert_pending_events(
            self._conn,
            [
                {
                    "webhook_id": webhook_id,
                    "team_id": self._team_id,
                    "event_id": event_id,
                    "event_name": name,
                    "batch_id": None,
                    "created_at": now,
                }
                for webhook_id in subscribed
            ],
        )
        threshold = now + FLUSH_MARGIN
        for webhook_id in subscribed:
            due = self._due.get(webhook_id)
            if due is not None and due >= threshold:
                continue
            _schedule_flush(self._conn, webhook_id, at=now + BATCH_WINDOW, threshold=threshold, now=now)
            self._due[webhook_id] = threshold  # queued by this call (later still), or already due at least then


def _schedule_flush(conn: Connection, webhook_id: str, *, at: datetime, threshold: datetime, now: datetime) -> None:
    if queries.schedule_flush(conn, webhook_id, flush_at=at, threshold=threshold):
        enqueue(conn, kind=WorkKind.WEBHOOK, ref=f"{FLUSH}|{webhook_id}", run_at=at, now=now)


def sweep_stranded(conn: Connection, *, now: datetime) -> int:
    """Queue a flush for endpoints whose events have waited ``STRANDED_AFTER`` with none due (a safety net)."""
    stale = now - STRANDED_AFTER
    stranded = queries.stranded_webhooks(conn, created_before=stale, flush_before=stale)
    for webhook_id in stranded:
        _schedule_flush(conn, webhook_id, at=now, threshold=now + BATCH_WINDOW, now=now)
    return len(stranded)


@dataclass(frozen=True, slots=True)
class Claimed:
    webhook: Row[Any]
    events: Sequence[Any]

    @property
    def full(self) -> bool:
        return len(self.events) >= BATCH_SIZE


class StaleClaim(Exception):
    """Some of the events a batch was built from were taken by another flush meanwhile; build it again."""


def peek_pending_events(conn: Connection, *, webhook_id: str) -> Claimed | None:
    """The enabled endpoint's oldest waiting events (up to ``BATCH_SIZE``), read without taking them.

    The batch body is built from them outside any write transaction (rendering 100 events must not hold the
    SQLite writer); ``create_batch`` then takes exactly these events or fails with ``StaleClaim``.
    """
    webhook = queries.webhook_by_id(conn, webhook_id)
    if webhook is None or not webhook.enabled:
        return None
    events = queries.pending_events(conn, webhook_id, BATCH_SIZE, lock=False)
    return Claimed(webhook, events) if events else None


def _flush_again_if_waiting(conn: Connection, webhook_id: str, *, full: bool, now: datetime) -> None:
    """Events recorded while this flush ran (after its read) would otherwise wait for the sweep."""
    if queries.has_pending_events(conn, webhook_id):
        at = now if full else now + BATCH_WINDOW
        _schedule_flush(conn, webhook_id, at=at, threshold=at + BATCH_WINDOW, now=now)


def finish_empty_flush(conn: Connection, *, webhook_id: str, now: datetime) -> None:
    """A flush that found nothing to send: clear ``flush_at``, drop a disabled endpoint's leftovers."""
    webhook = queries.webhook_by_id(conn, webhook_id)
    if webhook is None:
        return
    queries.clear_flush(conn, webhook_id)
    if not webhook.enabled:
        queries.drop_pending_events(conn, webhook_id)
        return
    _flush_again_if_waiting(conn, webhook_id, full=False, now=now)


def create_batch(conn: Connection, *, claimed: Claimed, body: bytes, now: datetime) -> str:
    """Take the claimed events into a stored batch and queue its delivery; flush again if more events wait."""
    batch_id = new_id("whd")
    webhook = claimed.webhook
    queries.clear_flush(conn, webhook.id)
    taken = queries.assign_events(conn, [e.id for e in claimed.events], batch_id)
    if taken != len(claimed.events):
        raise StaleClaim(webhook.id)
    queries.insert_batch(
        conn,
        {
            "id": batch_id,
            "webhook_id": webhook.id,
            "team_id": webhook.team_id,
            "status": "pending",
            "event_count": len(claimed.events),
            "body": body.decode(),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )
    enqueue(conn, kind=WorkKind.WEBHOOK, ref=f"{DELIVER}|{batch_id}", run_at=now, now=now)
    _flush_again_if_waiting(conn, webhook.id, full=claimed.full, now=now)
    return batch_id


# -- delivery decisions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """Everything one POST needs, loaded and unsealed."""

    batch: Row[Any]
    webhook: Row[Any]
    signing_secrets: list[str]
    credentials: Credentials

    @property
    def body(self) -> bytes:
        return str(self.batch.body).encode()


def delivery_job(conn: Connection, *, batch_id: str, server_secret: bytes, now: datetime) -> DeliveryJob | None:
    batch = queries.batch_by_id(conn, batch_id)
    if batch is None:
        return None
    webhook = queries.webhook_by_id(conn, batch.webhook_id)
    if webhook is None:
        return None
    credentials_box, secret_box = _boxes(server_secret)
    signing = [secret_box.open(webhook.signing_secret)]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_signing_secret is not None and expires is not None and expires > now:
        signing.append(secret_box.open(webhook.previous_signing_secret))
    credentials = Credentials(auth_type="none")
    if webhook.auth_credentials:
        stored = msgspec.json.decode(credentials_box.open(webhook.auth_credentials))
        credentials = Credentials(
            auth_type=webhook.auth_type,
            username=stored.get("auth_username"),
            password=stored.get("auth_password"),
            client_id=stored.get("oauth_client_id"),
            client_secret=stored.get("oauth_client_secret"),
            token_url=stored.get("oauth_token_url"),
        )
    return DeliveryJob(batch=batch, webhook=webhook, signing_secrets=signing, credentials=credentials)


class Step(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    EXHAUSTED = "exhausted"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    retry_at: datetime | None = None


def decide(*, status_code: int | None, attempt: int, now: datetime, retry_scale: float = 1.0) -> Decision:
    """What attempt number ``attempt`` (1-based) of a batch leads to.

    2xx succeeds; 410 Gone disables the endpoint; anything else (3xx too: redirects are never followed, a
    timeout, a refused connection or destination) is retried along ``RETRY_DELAYS`` until ``MAX_ATTEMPTS``.
    """
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Step.SUCCEEDED)
    if status_code == 410:
        return Decision(Step.GONE)
    if attempt >= MAX_ATTEMPTS:
        return Decision(Step.EXHAUSTED)
    delay = RETRY_DELAYS[attempt - 1] * retry_scale
    return Decision(Step.RETRY, retry_at=now + timedelta(seconds=delay))


def should_auto_disable(*, failing_since: datetime | None, now: datetime) -> bool:
    """Whether an endpoint that just failed again has now failed continuously for ``AUTO_DISABLE_AFTER``."""
    return failing_since is not None and now - failing_since >= AUTO_DISABLE_AFTER


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One HTTP attempt as the log keeps it."""

    started_at: datetime
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None


def _disable(conn: Connection, webhook: Row[Any], *, kind: str, message: str, now: datetime) -> None:
    queries.update_webhook_by_id(conn, webhook.id, {"enabled": False, "disabled_reason": message, "updated_at": now})
    _stop_deliveries(conn, webhook.id, now, message)
    queries.insert_alert(
        conn, {"team_id": webhook.team_id, "webhook_id": webhook.id, "kind": kind, "message": message,
               "created_at": now},
    )  # fmt: skip


def record_attempt(
    conn: Connection,
    *,
    job: DeliveryJob,
    attempt: AttemptRecord,
    decision: Decision,
    replay: bool,
    now: datetime,
) -> None:
    """Write the log row, the batch's new state and the endpoint's health, in the work item's transaction."""
    batch = job.batch
    current = queries.batch_by_id(conn, batch.id)
    webhook = queries.webhook_by_id(conn, batch.webhook_id)
    if current is None or webhook is None:
        return  # deleted while the request was in flight
    logged = len(queries.attempts_of(conn, batch.team_id, [batch.id]))
    success = decision.step is Step.SUCCEEDED
    queries.insert_attempt(
        conn,
        {
            "batch_id": batch.id,
            "webhook_id": batch.webhook_id,
            "team_id": batch.team_id,
            "attempt": logged + 1,
            "trigger": "replay" if replay else "schedule",
            "started_at": attempt.started_at,
            "success": success,
            "status_code": attempt.status_code,
            "latency_ms": attempt.latency_ms,
            "response_excerpt": attempt.excerpt,
            "error": attempt.error,
        },
    )
    batch_values: dict[str, Any] = {"last_status_code": attempt.status_code, "last_error": attempt.error,
                                    "updated_at": now}  # fmt: skip
    if not replay:
        batch_values["attempts"] = current.attempts + 1
    if success:
        batch_values.update(status="succeeded", delivered_at=now, next_attempt_at=None, last_error=None)
    elif replay:
        pass  # a failed replay leaves the batch where its own schedule had it
    elif decision.step is Step.RETRY:
        batch_values.update(status="retrying", next_attempt_at=decision.retry_at)
    else:
        batch_values.update(status="failed", next_attempt_at=None)
    queries.update_batch(conn, batch.id, batch_values)

    if success:
        queries.update_webhook_by_id(
            conn, webhook.id, {"last_successful_at": now, "last_status": "success", "failing_since": None}
        )
        return
    failing_since = webhook.failing_since or now
    queries.update_webhook_by_id(
        conn, webhook.id, {"last_failure_at": now, "last_status": "failure", "failing_since": failing_since}
    )
    if not webhook.enabled:
        return
    if decision.step is Step.GONE:
        _disable(conn, webhook, kind="disabled_gone",
                 message="Disabled: the endpoint answered 410 Gone.", now=now)  # fmt: skip
    elif should_auto_disable(failing_since=failing_since, now=now):
        _disable(
            conn,
            webhook,
            kind="disabled_failing",
            message=f"Disabled: every delivery has failed since {failing_since.isoformat(timespec='seconds')}.",
            now=now,
        )


def cancel_batch(conn: Connection, *, batch_id: str, now: datetime) -> None:
    """A batch whose endpoint was disabled before its attempt: nothing will be sent."""
    queries.update_batch(
        conn,
        batch_id,
        {"status": "cancelled", "next_attempt_at": None, "last_error": "The webhook is disabled.", "updated_at": now},
        only_in=("pending", "retrying"),
    )
