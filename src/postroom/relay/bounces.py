"""Turning a received DSN or feedback report into events and suppressions (one unit of work; never commits).

Which recipient a report is about comes from the VERP address it was sent to (``delivery/return_path.py``); a
report sent to the bare bounce address instead is matched by the returned message's ``Message-ID`` and the
addresses the report names. What is recorded, with SparkPost's meanings:

- ``Action: failed`` for a recipient we recorded as delivered → ``out_of_band`` (the receiving server accepted the
  message, then gave up on it); for one still queued or deferred → ``bounce``, and the recipient becomes bounced.
  Both carry the ``bounce_class`` of ``delivery/classify.py`` for the report's SMTP code and diagnostic; a hard
  bounce (the address does not exist) suppresses the address, exactly as a refusal during delivery does.
- ``Action: delayed`` → ``delay`` (the status is left to the worker; nothing is suppressed).
- An ARF report of any type but ``not-spam`` → ``spam_complaint``, and the address is suppressed.

A recipient's status never moves backwards: an ``out_of_band`` failure leaves a delivered recipient delivered
(its events tell the story). A report received twice records its events once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from postroom.delivery.classify import classify_reply
from postroom.emails import queries as email_queries
from postroom.emails import service as emails_service
from postroom.emails.service import EventType
from postroom.relay import queries
from postroom.relay.reports import Report, ReportKind

_PENDING = ("queued", "deferred")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One event written for a report (what the intake logs)."""

    event_type: str
    recipient_id: int
    suppressed: bool = False


def _recipients(conn: Connection, report: Report, recipient_ids: Sequence[int]) -> list[Row[Any]]:
    if recipient_ids:
        return list(queries.recipients_by_ids(conn, recipient_ids))
    if report.original_message_id is None:
        return []
    candidates = list(queries.recipients_by_message_header(conn, report.original_message_id))
    named: set[str] = set()
    if report.feedback is not None and report.feedback.original_rcpt_to:
        named.add(report.feedback.original_rcpt_to.lower())
    for block in report.recipients:
        named.update(a.lower() for a in (block.final_recipient, block.original_recipient) if a)
    named = named or set(report.original_recipients)
    matched = [r for r in candidates if r.email.lower() in named]
    if not matched and len(candidates) == 1:
        matched = candidates
    return matched


def record_report(
    conn: Connection, *, report: Report, recipient_ids: Sequence[int], report_to: str, now: datetime
) -> list[Recorded]:
    """Record what ``report`` says about the recipients it concerns; ``recipient_ids`` come from VERP addresses."""
    recorded: list[Recorded] = []
    for recipient in _recipients(conn, report, recipient_ids):
        if report.kind is ReportKind.FEEDBACK:
            outcome = _record_complaint(conn, recipient, report, report_to, now)
        else:
            outcome = _record_delivery_status(conn, recipient, report, now)
        if outcome is not None:
            recorded.append(outcome)
    return recorded


def _record_delivery_status(conn: Connection, recipient: Row[Any], report: Report, now: datetime) -> Recorded | None:
    blocks = report.blocks_for(recipient.email)
    block = next((b for b in blocks if b.action == "failed"), None) or next(
        (b for b in blocks if b.action == "delayed"), None
    )
    if block is None:  # delivered, relayed or expanded: nothing went wrong
        return None
    code = block.reply_code
    outcome = classify_reply(code, block.text)
    details = {
        "reason": outcome.reason,
        "raw_reason": " ".join(block.text.split())[:1000],
        "error_code": str(code),
        "num_retries": recipient.attempts,
    }
    if block.action == "delayed":
        if recipient.status not in (*_PENDING, "delivered"):
            return None
        emails_service.record_recipient_event(conn, recipient, EventType.DELAY, now, details, outcome.bounce_class)
        return Recorded(EventType.DELAY, recipient.id)
    if recipient.status in _PENDING:
        if not email_queries.move_recipient(conn, recipient.id, "bounced", now=now, error=outcome.reason):
            return None
        event_type = EventType.BOUNCE
    elif recipient.status == "delivered":
        if queries.has_event(conn, recipient.message_id, recipient.id, EventType.OUT_OF_BAND):
            return None
        event_type = EventType.OUT_OF_BAND
    else:  # already bounced, failed or suppressed: the report adds nothing
        return None
    emails_service.record_recipient_event(conn, recipient, event_type, now, details, outcome.bounce_class)
    if outcome.suppress:
        reporter = report.reporting_mta or report.reported_by or "a bounce report"
        emails_service.suppress(
            conn,
            team_id=recipient.team_id,
            email=recipient.email,
            reason="hard_bounce",
            source=f"{recipient.request_id}: {outcome.reason} (reported by {reporter})"[:500],
            now=now,
        )
    return Recorded(event_type, recipient.id, suppressed=outcome.suppress)


def _record_complaint(
    conn: Connection, recipient: Row[Any], report: Report, report_to: str, now: datetime
) -> Recorded | None:
    feedback = report.feedback
    if feedback is None or feedback.feedback_type == "not-spam":
        return None
    if not queries.has_event(conn, recipient.message_id, recipient.id, EventType.SPAM_COMPLAINT):
        emails_service.record_recipient_event(
            conn,
            recipient,
            EventType.SPAM_COMPLAINT,
            now,
            {"fbtype": feedback.feedback_type, "report_by": report.reported_by, "report_to": report_to},
        )
    emails_service.suppress(
        conn,
        team_id=recipient.team_id,
        email=recipient.email,
        reason="spam_complaint",
        source=f"{recipient.request_id}: {feedback.feedback_type} complaint from {report.reported_by or 'unknown'}"[
            :500
        ],
        now=now,
    )
    return Recorded(EventType.SPAM_COMPLAINT, recipient.id, suppressed=True)
