"""Accepting sends and scheduled sends, recording events, and reading them back.

``accept`` is one unit of work: the message, its recipients, their first events and the delivery work items are
written in the caller's transaction, so a 200 means all of it is committed and nothing accepted can be lost.
Suppressed recipients are accepted into the record but not delivered: they count in ``rejected`` and get a
``policy_rejection`` event.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import Connection, Row

from postroom.audit.service import Actor
from postroom.core.ids import new_id
from postroom.domains import service as domains_service
from postroom.emails import contact_status, queries
from postroom.emails.queries import EventQuery
from postroom.errors import EmailNotFound, ScheduleCancellationFailed, ScheduledEmailNotFound, UnconfiguredDomain
from postroom.jobs.base import WorkKind, enqueue
from postroom.messages.request import SendRequest
from postroom.teams import service as teams_service
from postroom.templates import service as templates_service
from postroom.webhooks import service as webhooks_service


class EventType(StrEnum):
    """The event types Postroom records itself (``EVENT_TYPES`` lists every type the API filters on)."""

    INJECTION = "injection"
    DELIVERY = "delivery"
    DELAY = "delay"
    BOUNCE = "bounce"
    POLICY_REJECTION = "policy_rejection"
    GENERATION_FAILURE = "generation_failure"
    OUT_OF_BAND = "out_of_band"
    SPAM_COMPLAINT = "spam_complaint"
    OPEN = "open"
    INITIAL_OPEN = "initial_open"
    CLICK = "click"


EVENT_TYPES = (
    "injection", "delivery", "bounce", "delay", "out_of_band", "spam_complaint", "policy_rejection", "click",
    "open", "initial_open", "amp_click", "amp_open", "amp_initial_open", "generation_failure",
    "generation_rejection", "list_unsubscribe", "link_unsubscribe",
)  # fmt: skip

SCHEDULED_STATES = ("scheduled", "sending", "sent", "cancelled", "failed")


def numeric_id() -> str:
    """A 19-digit id, the shape of Lettr's request and event ids."""
    return str(10**18 + secrets.randbelow(9 * 10**18))


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    message_id: str
    accepted: int
    rejected: int


def _sending_domain(conn: Connection, team_id: int, request: SendRequest) -> None:
    name = domains_service.sending_domain_of(request.sending_domain)
    if not domains_service.may_send_from(conn, team_id=team_id, name=name):
        raise UnconfiguredDomain()


def _check_send(conn: Connection, team_id: int, request: SendRequest) -> tuple[int, SendRequest]:
    """The project id and the send to store, after the checks every send and schedule shares (project, template,
    sending domain). With ``template_slug`` the stored send carries the template version's content."""
    project_id = teams_service.project_for_send(conn, team_id=team_id, project_id=request.project_id)
    if request.template_slug is not None:
        request = templates_service.resolve_for_send(conn, team_id=team_id, project_id=project_id, request=request)
    _sending_domain(conn, team_id, request)
    return project_id, request


class EventCounts:
    """The events one transaction records, counted per team, type and hour until ``write`` adds them to
    ``event_counts``: one statement per counter instead of one per event, taken in one order by every
    transaction (row locks on PostgreSQL)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[int, str, datetime]] = Counter()

    def add(self, team_id: int, event_type: str, occurred_at: datetime) -> None:
        self._counts[(team_id, event_type, queries.hour_of(occurred_at))] += 1

    def write(self, conn: Connection) -> None:
        queries.add_event_counts(conn, sorted(self._counts.items()))
        self._counts.clear()


def record_event(
    conn: Connection,
    *,
    team_id: int,
    message_id: str,
    recipient_id: int,
    rcpt_to: str,
    event_type: str,
    now: datetime,
    bounce_class: int | None = None,
    details: dict[str, Any] | None = None,
    fanout: webhooks_service.EventFanout | None = None,
    counts: EventCounts | None = None,
) -> None:
    """Append an event and count it; in the same transaction it becomes webhook work for the team's subscribed
    endpoints (through ``fanout`` and ``counts``, which the caller writes, when it records several events)."""
    event_id = numeric_id()
    queries.insert_event(
        conn,
        {
            "event_id": event_id,
            "team_id": team_id,
            "message_id": message_id,
            "recipient_id": recipient_id,
            "type": event_type,
            "occurred_at": now,
            "rcpt_to": rcpt_to,
            "bounce_class": bounce_class,
            "details": msgspec.json.encode(details).decode() if details else None,
        },
    )
    fanout = fanout or webhooks_service.EventFanout(conn, team_id)
    fanout.record(event_id=event_id, event_type=event_type, now=now)
    if counts is None:
        queries.add_event_counts(conn, [((team_id, event_type, queries.hour_of(now)), 1)])
    else:
        counts.add(team_id, event_type, now)


def record_recipient_event(
    conn: Connection,
    recipient: Row[Any],
    event_type: str,
    now: datetime,
    details: dict[str, Any],
    bounce_class: int | None = None,
    fanout: webhooks_service.EventFanout | None = None,
    counts: EventCounts | None = None,
) -> None:
    """``record_event`` for a ``recipients`` row; its ``rcpt_type`` goes into the details."""
    record_event(
        conn,
        team_id=recipient.team_id,
        message_id=recipient.message_id,
        recipient_id=recipient.id,
        rcpt_to=recipient.email,
        event_type=event_type,
        now=now,
        bounce_class=bounce_class,
        details={"rcpt_type": recipient.rcpt_type, **details},
        fanout=fanout,
        counts=counts,
    )


def _approximate_size(request: SendRequest) -> int:
    size = sum(len(part or "") for part in (request.subject, request.html, request.text, request.amp_html))
    return size + sum(len(a.data) * 3 // 4 for a in request.attachments)


def accept(
    conn: Connection,
    *,
    team_id: int,
    api_key_id: str | None,
    request: SendRequest,
    now: datetime,
    mail_hostname: str,
    scheduled_id: str | None = None,
    recv_method: str = "rest",
    sandbox: bool = False,
) -> Accepted:
    """Record a send and queue its delivery; raises the Lettr 4xx errors for unusable projects and domains.
    ``recv_method`` says how it arrived: ``rest`` (the API, scheduled sends) or ``esmtp`` (the SMTP relay).
    A ``sandbox`` send (made with a sandbox key) is delivered into the local inbox and never consults the
    suppression list."""
    project_id, request = _check_send(conn, team_id, request)
    listed = request.recipients()
    suppressed = set() if sandbox else queries.suppressed_among(conn, team_id, [address for address, _ in listed])
    message_id = new_id("msg")
    request_id = numeric_id()
    queries.insert_message(
        conn,
        {
            "id": message_id,
            "request_id": request_id,
            "team_id": team_id,
            "project_id": project_id,
            "api_key_id": api_key_id,
            "scheduled_id": scheduled_id,
            "from_email": request.from_email,
            "from_name": request.from_name,
            "sending_domain": request.sending_domain,
            "subject": request.subject or "",
            "message_id_header": f"<{request_id}.{secrets.token_hex(6)}@{mail_hostname}>",
            "tag": request.tag,
            "content": request.to_json(),
            "metadata": msgspec.json.encode(request.metadata).decode() if request.metadata else None,
            "transactional": request.transactional,
            "msg_size": _approximate_size(request),
            "created_at": now,
            "recv_method": recv_method,
            "open_tracking": request.html is not None and request.options.get("open_tracking", False),
            "click_tracking": request.html is not None and request.options.get("click_tracking", False),
            "sandbox": sandbox,
        },
    )
    domains_to_deliver: set[str] = set()
    fanout = webhooks_service.EventFanout(conn, team_id)
    counts = EventCounts()
    for address, rcpt_type in listed:
        domain = address.rsplit("@", 1)[1].lower()
        is_suppressed = address.lower() in suppressed
        recipient_id = queries.insert_recipient(
            conn,
            {
                "message_id": message_id,
                "team_id": team_id,
                "email": address,
                "rcpt_type": rcpt_type,
                "domain": domain,
                "status": "suppressed" if is_suppressed else "queued",
                "attempts": 0,
                "updated_at": now,
            },
        )
        suppressed_reason = "Recipient address is on the suppression list."
        record_event(
            conn,
            team_id=team_id,
            message_id=message_id,
            recipient_id=recipient_id,
            rcpt_to=address,
            event_type=EventType.POLICY_REJECTION if is_suppressed else EventType.INJECTION,
            now=now,
            bounce_class=25 if is_suppressed else None,
            details=(
                {
                    "rcpt_type": rcpt_type,
                    "reason": suppressed_reason,
                    "raw_reason": suppressed_reason,
                    "error_code": "554",
                }
                if is_suppressed
                else {"rcpt_type": rcpt_type}
            ),
            fanout=fanout,
            counts=counts,
        )
        if is_suppressed:
            continue
        domains_to_deliver.add(domain)
    counts.write(conn)
    for domain in sorted(domains_to_deliver):
        enqueue(conn, kind=WorkKind.DELIVER, ref=f"{message_id}|{domain}", run_at=now, now=now)
    rejected = sum(1 for address, _ in listed if address.lower() in suppressed)
    return Accepted(request_id=request_id, message_id=message_id, accepted=len(listed) - rejected, rejected=rejected)


# -- scheduled sends -----------------------------------------------------------------------------------------


def schedule(
    conn: Connection,
    *,
    team_id: int,
    api_key_id: str | None,
    request: SendRequest,
    scheduled_at: datetime,
    now: datetime,
) -> Row[Any]:
    """Store a send for later; its project and domain are checked now and again at release time."""
    _check_send(conn, team_id, request)
    listed = request.recipients()
    suppressed = queries.suppressed_among(conn, team_id, [address for address, _ in listed])
    scheduled_id = new_id("sch")
    queries.insert_scheduled(
        conn,
        {
            "id": scheduled_id,
            "team_id": team_id,
            "api_key_id": api_key_id,
            "state": "scheduled",
            "scheduled_at": scheduled_at,
            "content": request.to_json(),
            "from_email": request.from_email,
            "from_name": request.from_name,
            "subject": request.subject,
            "recipients": msgspec.json.encode([address for address, _ in listed]).decode(),
            "tag": request.tag,
            "accepted": len(listed) - len(suppressed),
            "rejected": len(suppressed),
            "created_at": now,
            "updated_at": now,
        },
    )
    enqueue(conn, kind=WorkKind.RELEASE_SCHEDULED, ref=scheduled_id, run_at=scheduled_at, now=now)
    return get_scheduled(conn, team_id=team_id, scheduled_id=scheduled_id)


def get_scheduled(conn: Connection, *, team_id: int, scheduled_id: str) -> Row[Any]:
    row = queries.scheduled_in_team(conn, team_id, scheduled_id)
    if row is None:
        raise ScheduledEmailNotFound()
    return row


def list_scheduled(
    conn: Connection, *, team_id: int, state: str | None, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    return queries.scheduled_page(conn, team_id, state=state, offset=offset, limit=limit)


def cancel_scheduled(conn: Connection, *, team_id: int, scheduled_id: str, actor: Actor, now: datetime) -> Row[Any]:
    """Cancel a send that is still waiting; 409 once it is released, cancelled or failed."""
    get_scheduled(conn, team_id=team_id, scheduled_id=scheduled_id)
    if not queries.update_scheduled(
        conn, scheduled_id, {"state": "cancelled", "accepted": 0, "updated_at": now}, only_in_state="scheduled"
    ):
        raise ScheduleCancellationFailed(scheduled_id)
    actor.record(
        conn,
        team_id=team_id,
        action="scheduled_email.cancelled",
        target=f"scheduled_email:{scheduled_id}",
        old={"state": "scheduled"},
        new={"state": "cancelled"},
        now=now,
    )
    return get_scheduled(conn, team_id=team_id, scheduled_id=scheduled_id)


def scheduled_for_release(conn: Connection, scheduled_id: str) -> Row[Any] | None:
    return queries.scheduled_by_id(conn, scheduled_id)


def mark_scheduled(conn: Connection, scheduled_id: str, values: dict[str, Any]) -> bool:
    return queries.update_scheduled(conn, scheduled_id, values, only_in_state="scheduled")


# -- reading --------------------------------------------------------------------------------------------------


def get_message(conn: Connection, *, team_id: int, request_id: str) -> Row[Any]:
    row = queries.message_by_request_id(conn, team_id, request_id)
    if row is None:
        raise EmailNotFound()
    return row


def message_recipients(conn: Connection, *, message_id: str) -> Sequence[Row[Any]]:
    return queries.recipients_of(conn, message_id)


def message_events(
    conn: Connection, *, team_id: int, message_id: str, since: datetime, until: datetime
) -> Sequence[Row[Any]]:
    return queries.events_of_message(conn, team_id, message_id, since, until)


def list_events(conn: Connection, *, team_id: int, query: EventQuery) -> tuple[Sequence[Row[Any]], int]:
    """One page of the team's events, newest first, and how many match in all."""
    return queries.events_page(conn, team_id, query)


# -- suppressions ---------------------------------------------------------------------------------------------


def suppress(conn: Connection, *, team_id: int, email: str, reason: str, source: str, now: datetime) -> None:
    """Put ``email`` on the team's suppression list; the team's contacts with it become bounced or complained
    in the same transaction, so the list and the contacts never disagree."""
    queries.add_suppression(conn, team_id, email, reason, source, now)
    contact_status.address_suppressed(conn, team_id=team_id, email=email, reason=reason, now=now)


def list_suppressions(conn: Connection, *, team_id: int | None) -> Sequence[Row[Any]]:
    return queries.suppressions_of(conn, team_id)


def unsuppress(conn: Connection, *, team_id: int, email: str, actor: Actor, now: datetime) -> bool:
    """Take ``email`` off the suppression list, its bounced or complained contacts subscribed again; False (and
    nothing recorded) when it was not suppressed."""
    if not queries.remove_suppression(conn, team_id, email):
        return False
    contact_status.address_unsuppressed(conn, team_id=team_id, email=email, now=now)
    actor.record(
        conn,
        team_id=team_id,
        action="suppression.removed",
        target=f"suppression:{email.lower()}",
        old={"suppressed": True},
        new={"suppressed": False},
        now=now,
    )
    return True


def forget_expired_idempotency_keys(conn: Connection, *, now: datetime) -> None:
    queries.delete_expired_idempotency_records(conn, now)
