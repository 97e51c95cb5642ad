"""Emails: search the team's sent messages and open one with its recipients and events
(through ``postroom.emails.service``, the same reads the API uses)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from postroom.core.clock import utcnow
from postroom.dashboard.routes.common import db_of
from postroom.dashboard.web import render, signed_in
from postroom.emails import service as emails_service
from postroom.emails.queries import EventQuery
from postroom.inbox import service as inbox_service

PAGE_SIZE = 50
DAY_CHOICES = (1, 7, 30, 90)


@get("/emails", include_in_schema=False)
async def search_emails(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    recipient = (request.query_params.get("recipient") or "").strip()[:254]
    request_id = (request.query_params.get("request_id") or "").strip()[:32]
    days_text = request.query_params.get("days") or "7"
    days = int(days_text) if days_text.isdigit() and int(days_text) in DAY_CHOICES else 7
    event_type = request.query_params.get("event") or "injection"
    if event_type not in emails_service.EVENT_TYPES:
        event_type = "injection"
    now = utcnow()
    query = EventQuery(
        since=now - timedelta(days=days),
        until=now,
        limit=PAGE_SIZE,
        types=[event_type],
        recipients_in=[recipient] if recipient else None,
        request_id=request_id or None,
    )
    rows, total = await db_of(request).read(
        lambda conn: emails_service.list_events(conn, team_id=session.team_id, query=query)
    )
    return render(
        request,
        "emails.html",
        rows=rows,
        total=total,
        recipient=recipient,
        request_id=request_id,
        days=days,
        day_choices=DAY_CHOICES,
        event_type=event_type,
        event_types=emails_service.EVENT_TYPES,
    )


@get("/emails/{request_id:str}", include_in_schema=False)
async def email_detail(request: Request[Any, Any, Any], request_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    now = utcnow()

    def load(conn: Any) -> dict[str, Any]:
        message = emails_service.get_message(conn, team_id=session.team_id, request_id=request_id)
        captures, _ = inbox_service.list_captures(conn, team_id=session.team_id, message_id=message.id)
        return {
            "captures": {capture.rcpt_to: capture.id for capture in captures},
            "message": message,
            "recipients": emails_service.message_recipients(conn, message_id=message.id),
            "events": emails_service.message_events(
                conn, team_id=session.team_id, message_id=message.id, since=now - timedelta(days=3650), until=now
            ),
        }

    loaded = await db_of(request).read(load)
    details = {}
    for event in loaded["events"]:
        try:
            details[event.event_id] = json.loads(event.details) if event.details else {}
        except ValueError:
            details[event.event_id] = {}
    return render(request, "email_detail.html", details=details, **loaded)


HANDLERS = [search_emails, email_detail]
