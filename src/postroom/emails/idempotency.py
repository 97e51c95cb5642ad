"""``Idempotency-Key`` on ``POST /api/emails``, exactly as the Lettr SDKs expect.

Scope is team + API key. A key is claimed in the transaction that accepts the send, and the outcome is stored in
it too: a concurrent duplicate waits for that transaction (the single writer on SQLite, a transaction-scoped lock
on PostgreSQL) and then replays its response with ``Idempotency-Replayed: true``. The same key with another payload
is 409 ``idempotency_key_conflict``. 2xx and 4xx outcomes are kept 24 hours; a 5xx or a crash stores nothing, so
the caller may try again. A claim recorded but not finished (``in_progress``) answers 409
``idempotency_in_progress`` with ``Retry-After`` until ``LOCK`` has passed, then is taken over.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection

from postroom.db.engine import serialise_on
from postroom.emails import queries
from postroom.errors import IdempotencyConflict, IdempotencyInProgress, ValidationFailed

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)
LOCK = timedelta(seconds=60)
_KEY = re.compile(r"[A-Za-z0-9._-]{1,255}")


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def check_key(value: str | None) -> str | None:
    """The header's value if valid, None when absent; the SDK's own 422 when malformed."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise ValidationFailed({HEADER: ["Use 1 to 255 letters, digits, periods, underscores or hyphens."]})
    return value


def fingerprint(body: dict[str, Any]) -> str:
    """SHA-256 of the body as canonical JSON (sorted keys), so key order and whitespace do not matter."""
    canonical = msgspec.json.encode(body, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def claim(
    conn: Connection, *, team_id: int, api_key_id: str, key: str, fingerprint: str, now: datetime
) -> int | StoredResponse:
    """Claim ``key`` for this request (its record id), or the stored response to replay; raises on conflict."""
    serialise_on(conn, f"idempotency:{team_id}:{api_key_id}:{key}")
    record = queries.idempotency_record(conn, team_id, api_key_id, key)
    if record is not None and record.expires_at <= now:
        queries.delete_idempotency_record(conn, record.id)
        record = None
    if record is None:
        return queries.insert_idempotency_record(
            conn,
            {
                "team_id": team_id,
                "api_key_id": api_key_id,
                "key": key,
                "fingerprint": fingerprint,
                "status": "in_progress",
                "locked_until": now + LOCK,
                "created_at": now,
                "expires_at": now + RETENTION,
            },
        )
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict()
    if record.status == "done":
        return StoredResponse(status=record.response_status, body=msgspec.json.decode(record.response_body))
    if record.locked_until is not None and record.locked_until > now:
        raise IdempotencyInProgress(1)  # the holder normally finishes within milliseconds
    queries.update_idempotency_record(conn, record.id, {"locked_until": now + LOCK})
    return int(record.id)


def complete(conn: Connection, *, record_id: int, status: int, body: dict[str, Any]) -> None:
    """Store the outcome to replay."""
    queries.complete_idempotency_record(conn, record_id, status=status, body=msgspec.json.encode(body).decode())


CLAIM_ERRORS = (IdempotencyConflict, IdempotencyInProgress)
"""What ``claim`` raises: answers about the key itself, never stored as its outcome."""
