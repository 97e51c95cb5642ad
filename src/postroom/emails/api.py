"""``/api/emails``: send, schedule, and read back what happened."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from postroom.apikeys.guard import CallerKey, caller_actor
from postroom.core.clock import iso_resource, utcnow
from postroom.core.envelope import envelope
from postroom.core.jsonbody import decode_body
from postroom.core.openapi import documented, envelope_of, request_body
from postroom.core.pagination import pagination_body, parse_page_params
from postroom.emails import idempotency, schemas, submission
from postroom.emails import service as emails_service
from postroom.emails.queries import EventQuery
from postroom.emails.schemas import (
    DEFAULT_WINDOW,
    cursor_page_body,
    decode_cursor,
    encode_cursor,
    parse_date,
    scheduled_body,
    sent_email_body,
    transmission_state,
)
from postroom.errors import NotFound, ValidationFailed
from postroom.messages.events import event_body
from postroom.messages.request import parse_schedule_request


@post(
    "/emails",
    status_code=200,
    responses=documented(200, envelope_of(schemas.SendResult, "SendEmailResponse"), errors=(404, 409, 413, 422)),
    operation_class=request_body(schemas.SendEmailInput, rules=schemas.SEND_CONTENT_RULE),
)
async def send_email(request: Request[Any, Any, State], state: State, api_key: CallerKey) -> Response[dict[str, Any]]:
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    body = decode_body(await request.body())
    submitted = await submission.submit_send(
        state.db,
        team_id=api_key.team_id,
        api_key_id=api_key.id,
        body=body,
        idempotency_key=key,
        mail_hostname=state.settings.mail_hostname,
        sandbox=api_key.sandbox,
    )
    if submitted.replayed:
        return Response(submitted.body, status_code=submitted.status, headers={"Idempotency-Replayed": "true"})
    state.wake_worker()
    return Response(submitted.body, status_code=200)


@get("/emails", responses=documented(200, envelope_of(schemas.SentEmailList, "SentEmailListResponse"), errors=(422,)))
async def list_emails(
    request: Request[Any, Any, State],
    state: State,
    api_key: CallerKey,
    per_page: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    recipients: FromQuery[str | None] = None,
    to: FromQuery[str | None] = None,
) -> dict[str, Any]:
    # "from" is a Python keyword, so it is read from the query string directly.
    return await _event_listing(
        state,
        api_key.team_id,
        per_page,
        cursor,
        recipients,
        request.query_params.get("from"),
        to,
        types=("injection",),
        sent_shape=True,
    )


@get(
    "/emails/events",
    responses=documented(200, envelope_of(schemas.EmailEventList, "EmailEventListResponse"), errors=(422,)),
)
async def list_email_events(
    request: Request[Any, Any, State],
    state: State,
    api_key: CallerKey,
    per_page: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    recipients: FromQuery[str | None] = None,
    events: FromQuery[str | None] = None,
    transmissions: FromQuery[str | None] = None,
    bounce_classes: FromQuery[str | None] = None,
    to: FromQuery[str | None] = None,
) -> dict[str, Any]:
    types = _csv(events)
    unknown = [t for t in types or () if t not in emails_service.EVENT_TYPES]
    if unknown:
        raise ValidationFailed({"events": [f"Unknown event type: {', '.join(unknown)}."]})
    classes: list[int] | None = None
    if bounce_classes:
        try:
            classes = [int(c) for c in _csv(bounce_classes) or ()]
        except ValueError:
            raise ValidationFailed({"bounce_classes": ["The bounce_classes must be integers."]}) from None
    return await _event_listing(
        state,
        api_key.team_id,
        per_page,
        cursor,
        recipients,
        request.query_params.get("from"),
        to,
        types=types,
        request_id=transmissions,
        bounce_classes=classes,
        message="Email events retrieved successfully.",
    )


def _csv(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


async def _event_listing(
    state: State,
    team_id: int,
    per_page: str | None,
    cursor: str | None,
    recipients: str | None,
    since_text: str | None,
    until_text: str | None,
    *,
    types: list[str] | tuple[str, ...] | None,
    request_id: str | None = None,
    bounce_classes: list[int] | None = None,
    sent_shape: bool = False,
    message: str = "Emails retrieved successfully.",
) -> dict[str, Any]:
    page = parse_page_params(None, per_page)
    before_id = decode_cursor(cursor)
    now = utcnow()
    since = parse_date("from", since_text, now - DEFAULT_WINDOW)
    until = parse_date("to", until_text, now, end_of_day=True)
    rows, total = await state.db.read(
        lambda conn: emails_service.list_events(
            conn,
            team_id=team_id,
            query=EventQuery(
                since=since,
                until=until,
                limit=page.per_page + 1,
                types=types,
                recipients_in=_csv(recipients),
                request_id=request_id,
                bounce_classes=bounce_classes,
                before_id=before_id,
            ),
        )
    )
    more = len(rows) > page.per_page
    rows = rows[: page.per_page]
    shape = sent_email_body if sent_shape else event_body
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return envelope(
        message, cursor_page_body([shape(r) for r in rows], total, since, until, next_cursor, page.per_page)
    )


@get(
    "/emails/{request_id:str}",
    responses=documented(200, envelope_of(schemas.Transmission, "TransmissionResponse"), errors=(404, 422)),
)
async def get_email(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, request_id: FromPath[str]
) -> dict[str, Any]:
    now = utcnow()
    since = parse_date("from", request.query_params.get("from"), now - DEFAULT_WINDOW)
    until = parse_date("to", request.query_params.get("to"), now + timedelta(seconds=1), end_of_day=True)

    def load(conn: Any) -> tuple[Any, Any, Any]:
        message = emails_service.get_message(conn, team_id=api_key.team_id, request_id=request_id)
        recipients = emails_service.message_recipients(conn, message_id=message.id)
        events = emails_service.message_events(
            conn, team_id=api_key.team_id, message_id=message.id, since=since, until=until
        )
        return message, recipients, events

    message, recipients, events = await state.db.read(load)
    addresses = list(dict.fromkeys(r.email for r in recipients))
    return envelope(
        "Email retrieved successfully.",
        {
            "transmission_id": message.request_id,
            "state": transmission_state([r.status for r in recipients]),
            "scheduled_at": None,
            "from": message.from_email,
            "from_name": message.from_name,
            "subject": message.subject,
            "recipients": addresses,
            "num_recipients": len(addresses),
            "events": [event_body(e) for e in events],
        },
    )


@post(
    "/emails/scheduled",
    status_code=201,
    responses=documented(201, envelope_of(schemas.ScheduledEmail, "ScheduledEmailResponse"), errors=(404, 413, 422)),
    operation_class=request_body(schemas.ScheduleEmailInput, rules=schemas.SEND_CONTENT_RULE),
)
async def schedule_email(request: Request[Any, Any, State], state: State, api_key: CallerKey) -> dict[str, Any]:
    now = utcnow()
    send, scheduled_at = parse_schedule_request(decode_body(await request.body()), now)
    row = await state.db.write(
        lambda conn: emails_service.schedule(
            conn, team_id=api_key.team_id, api_key_id=api_key.id, request=send, scheduled_at=scheduled_at, now=now
        )
    )
    return envelope("Email scheduled for delivery.", scheduled_body(row))


@get(
    "/emails/scheduled",
    responses=documented(200, envelope_of(schemas.ScheduledEmailList, "ScheduledEmailListResponse"), errors=(422,)),
)
async def list_scheduled_emails(
    state: State,
    api_key: CallerKey,
    status: FromQuery[str | None] = None,
    page: FromQuery[str | None] = None,
    per_page: FromQuery[str | None] = None,
) -> dict[str, Any]:
    request = parse_page_params(page, per_page)
    if status is not None and status not in emails_service.SCHEDULED_STATES:
        raise ValidationFailed(
            {"status": [f"The status must be one of: {', '.join(emails_service.SCHEDULED_STATES)}."]}
        )
    rows, total = await state.db.read(
        lambda conn: emails_service.list_scheduled(
            conn, team_id=api_key.team_id, state=status, offset=request.offset, limit=request.per_page
        )
    )
    return envelope(
        "Scheduled emails retrieved successfully.",
        {"scheduled_emails": [scheduled_body(r) for r in rows], "pagination": pagination_body(total, request)},
    )


@get(
    "/emails/scheduled/{request_id:str}",
    responses=documented(200, envelope_of(schemas.ScheduledEmail, "ScheduledEmailResponse"), errors=(404,)),
)
async def get_scheduled_email(state: State, api_key: CallerKey, request_id: FromPath[str]) -> dict[str, Any]:
    row = await state.db.read(
        lambda conn: emails_service.get_scheduled(conn, team_id=api_key.team_id, scheduled_id=request_id)
    )
    return envelope("Scheduled transmission retrieved successfully.", scheduled_body(row))


@delete(
    "/emails/scheduled/{request_id:str}",
    status_code=200,
    responses=documented(200, envelope_of(schemas.ScheduledEmail, "ScheduledEmailResponse"), errors=(404, 409)),
)
async def cancel_scheduled_email(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, request_id: FromPath[str]
) -> dict[str, Any]:
    who = caller_actor(request, api_key)
    row = await state.db.write(
        lambda conn: emails_service.cancel_scheduled(
            conn, team_id=api_key.team_id, scheduled_id=request_id, actor=who, now=utcnow()
        )
    )
    return envelope("Scheduled transmission cancelled successfully.", scheduled_body(row))


HANDLERS = [
    send_email,
    list_emails,
    list_email_events,
    get_email,
    schedule_email,
    list_scheduled_emails,
    get_scheduled_email,
    cancel_scheduled_email,
]


@get("/suppressions", responses=documented(200, envelope_of(schemas.SuppressionList, "SuppressionListResponse")))
async def list_suppressions(state: State, api_key: CallerKey) -> dict[str, Any]:
    """Postroom's own: the team's suppressed addresses (hard bounces and complaints), newest first."""
    rows = await state.db.read(lambda conn: emails_service.list_suppressions(conn, team_id=api_key.team_id))
    return envelope(
        "Suppressions retrieved successfully.",
        {
            "suppressions": [
                {"email": r.email, "reason": r.reason, "source": r.source, "created_at": iso_resource(r.created_at)}
                for r in rows
            ]
        },
    )


@delete(
    "/suppressions/{email:str}",
    status_code=200,
    responses=documented(200, envelope_of(schemas.RemovedSuppression, "RemovedSuppressionResponse"), errors=(404,)),
)
async def remove_suppression(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, email: FromPath[str]
) -> dict[str, Any]:
    who = caller_actor(request, api_key)
    removed = await state.db.write(
        lambda conn: emails_service.unsuppress(conn, team_id=api_key.team_id, email=email, actor=who, now=utcnow())
    )
    if not removed:
        raise NotFound("Suppression not found.")
    return envelope("Suppression removed.", {"email": email.lower()})


HANDLERS += [list_suppressions, remove_suppression]
