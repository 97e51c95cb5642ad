"""Recording failed authentications and blocking IPs that keep failing.

Every failure is a row (time, IP, key prefix, reason) that the logs page can show. Failures to *authenticate*
(no key, malformed, unknown, revoked, expired) count toward the lockout: ``failures`` of them from one IP within
``window`` block that IP for ``block``. A valid key used from outside its allowlist is recorded but does not count:
the key, not the caller, is what is wrong there. The rule lives in the database so every process enforces it.

A block refuses unauthenticated attempts only: a request with an active key that may be used from the address is
still served (``guard.py`` explains why), so one misconfigured client behind a shared address cannot lock out
every other client there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection

from postroom.auth import queries
from postroom.db.engine import serialise_on


class FailureReason(StrEnum):
    MISSING_KEY = "missing_key"
    MALFORMED_KEY = "malformed_key"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    EXPIRED_KEY = "expired_key"
    IP_NOT_ALLOWED = "ip_not_allowed"


COUNTED_REASONS = frozenset(
    {
        FailureReason.MISSING_KEY,
        FailureReason.MALFORMED_KEY,
        FailureReason.UNKNOWN_KEY,
        FailureReason.REVOKED_KEY,
        FailureReason.EXPIRED_KEY,
    }
)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    failures: int = 5
    window: timedelta = timedelta(minutes=5)
    block: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    reason: FailureReason
    ip: str | None
    method: str
    path: str
    key_prefix: str | None = None
    api_key_id: str | None = None
    team_id: int | None = None
    user_agent: str | None = None


def active_block(conn: Connection, *, ip: str, now: datetime) -> datetime | None:
    """When the block on ``ip`` ends, if it is blocked at ``now``."""
    until = queries.block_until(conn, ip)
    return until if until is not None and until > now else None


def record_failure(conn: Connection, *, failure: AuthFailure, policy: LockoutPolicy, now: datetime) -> bool:
    """Store ``failure``; block its IP if this failure reaches the threshold. True when the IP is now blocked."""
    counts = failure.reason in COUNTED_REASONS
    if failure.ip is not None and counts:
        serialise_on(conn, f"auth-lockout:{failure.ip}")
    queries.insert_failure(
        conn,
        {
            "occurred_at": now,
            "ip": failure.ip,
            "key_prefix": failure.key_prefix,
            "api_key_id": failure.api_key_id,
            "team_id": failure.team_id,
            "reason": failure.reason.value,
            "counts_toward_lockout": counts,
            "method": failure.method[:10],
            "path": failure.path[:255],
            "user_agent": None if failure.user_agent is None else failure.user_agent[:255],
        },
    )
    if failure.ip is None or not counts:
        return False
    if queries.count_counted_failures(conn, failure.ip, now - policy.window) < policy.failures:
        return False
    queries.upsert_block(conn, failure.ip, now + policy.block, now)
    return True
