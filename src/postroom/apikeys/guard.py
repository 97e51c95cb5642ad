"""The guard every API request passes: lockout → 401 → IP 403 → scope 403 → sandbox 403, in that order.

``Authenticator`` knows nothing of HTTP, so the SMTP relay can apply exactly the same rules. There is no cache of
keys: each request reads the key row (one indexed lookup), so a revocation, downgrade, allowlist change or
rotation made by any process applies to the very next request.

A blocked address (``lockout.py``) still gets in with a valid key. Many callers share one address (a NAT, a
proxy, an office), and a stale cron job among them with an old key must not lock every other application there
out. Presenting a key is no way around the block: the key row is read by the same one indexed lookup whether the
address is blocked or not, so the cost of an attempt does not depend on the answer, and a key carries ~345 random
bits, so guessing one is hopeless however many attempts are made. What a blocked address is refused, with the
429 and its ``Retry-After``, is every attempt that does not present an active key it may use from there: no key,
a malformed, unknown, revoked or expired key, or a key whose allowlist excludes the address. For those the block
comes first, before any 401 or 403 could tell the caller anything about the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import SkipValidation
from sqlalchemy import Connection

from postroom.apikeys import service as apikeys_service
from postroom.apikeys.service import ApiKeyRecord
from postroom.audit.service import Actor
from postroom.auth import queries as auth_queries
from postroom.auth.client_ip import connection_client_ip
from postroom.auth.keys import is_well_formed, key_digest, loggable_prefix
from postroom.auth.lockout import AuthFailure, FailureReason, LockoutPolicy, record_failure
from postroom.auth.ratelimit import enforce_rate_limit
from postroom.auth.scopes import PUBLIC, Scope, permits, sandbox_permits
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.core.netaddr import IPAddress, ip_allowed, stored_allowlist
from postroom.db.engine import Database
from postroom.errors import (
    ApiKeyRequired,
    InsufficientScope,
    InvalidApiKey,
    IpNotAllowed,
    PostroomError,
    SandboxKeyNotAllowed,
    TooManyAuthFailures,
)
from postroom.observability import metrics

log = logging.getLogger("postroom.auth")

CallerKey = NamedDependency[SkipValidation[ApiKeyRecord]]
"""The key the guard admitted for this request; a route takes it as ``api_key: CallerKey``.

Validation is skipped because the guard built the value itself (validating it again cost ~100 µs a request).
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request for access: the presented key, where it came from, and what it wants to do."""

    token: str | None
    ip: IPAddress | None
    required: Scope
    method: str
    path: str
    user_agent: str | None = None


def bearer_token(authorization: str | None) -> str | None:
    """The key from an ``Authorization: Bearer …`` header; ``""`` for another scheme, None for no key at all."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if not scheme:
        return None
    if scheme.lower() != "bearer":
        return ""
    value = value.strip()
    return value or None


class Authenticator:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._policy = LockoutPolicy(
            failures=settings.auth_lockout_failures,
            window=timedelta(seconds=settings.auth_lockout_window_seconds),
            block=timedelta(seconds=settings.auth_lockout_block_seconds),
        )
        self._last_used_interval = timedelta(seconds=settings.key_last_used_interval_seconds)

    async def authenticate(self, attempt: Attempt) -> ApiKeyRecord:
        """The key that may make ``attempt``, or a ``PostroomError`` saying why not (recorded first)."""
        now = utcnow()
        ip_text = None if attempt.ip is None else str(attempt.ip)
        token = attempt.token
        well_formed = bool(token) and is_well_formed(token or "")

        def lookup(conn: Connection) -> tuple[datetime | None, ApiKeyRecord | None]:
            blocked, row = auth_queries.guard_lookup(conn, ip_text, key_digest(token or "") if well_formed else None)
            return (
                blocked if blocked is not None and blocked > now else None,
                None if row is None else ApiKeyRecord.from_mapping(row),
            )

        blocked_until, key = await self._db.read(lookup)
        status = None if key is None else key.status(now)
        from_allowed_ip = key is not None and (
            not key.allowed_ips or ip_allowed(attempt.ip, stored_allowlist(key.allowed_ips))
        )
        if blocked_until is not None and not (status == "active" and from_allowed_ip):
            metrics.AUTH_REJECTIONS.labels(reason="ip_blocked").inc()
            raise TooManyAuthFailures(int((blocked_until - now).total_seconds()) + 1)

        if token is None:
            await self._fail(attempt, FailureReason.MISSING_KEY, ApiKeyRequired(), now)
        if not well_formed:
            await self._fail(attempt, FailureReason.MALFORMED_KEY, InvalidApiKey(), now)
        if key is None:
            await self._fail(attempt, FailureReason.UNKNOWN_KEY, InvalidApiKey(), now)
        assert key is not None
        if status != "active":
            reason = FailureReason.REVOKED_KEY if status == "revoked" else FailureReason.EXPIRED_KEY
            await self._fail(attempt, reason, InvalidApiKey(), now, key=key)

        if not from_allowed_ip:
            await self._fail(attempt, FailureReason.IP_NOT_ALLOWED, IpNotAllowed(), now, key=key)

        if not permits(key.permission, attempt.required):
            metrics.AUTH_REJECTIONS.labels(reason="insufficient_scope").inc()
            log.info(
                "insufficient scope",
                extra={"key_prefix": key.display_prefix, "ip": ip_text, "scope": attempt.required.value},
            )
            raise InsufficientScope()
        if key.sandbox and not sandbox_permits(attempt.required):
            metrics.AUTH_REJECTIONS.labels(reason="sandbox_key").inc()
            log.info(
                "sandbox key refused",
                extra={"key_prefix": key.display_prefix, "ip": ip_text, "scope": attempt.required.value},
            )
            raise SandboxKeyNotAllowed()

        stale = key.last_used_at is None or now - key.last_used_at >= self._last_used_interval
        if stale or key.last_used_ip != ip_text:
            key_id = key.id
            self._db.write_soon(lambda conn: apikeys_service.record_use(conn, key_id=key_id, used_at=now, ip=ip_text))
        return key

    async def _fail(
        self,
        attempt: Attempt,
        reason: FailureReason,
        error: PostroomError,
        now: datetime,
        *,
        key: ApiKeyRecord | None = None,
    ) -> None:
        failure = AuthFailure(
            reason=reason,
            ip=None if attempt.ip is None else str(attempt.ip),
            method=attempt.method,
            path=attempt.path,
            key_prefix=key.display_prefix if key else loggable_prefix(attempt.token or ""),
            api_key_id=key.id if key else None,
            team_id=key.team_id if key else None,
            user_agent=attempt.user_agent,
        )
        policy = self._policy
        await self._db.write(lambda conn: record_failure(conn, failure=failure, policy=policy, now=now))
        metrics.AUTH_REJECTIONS.labels(reason=reason.value).inc()
        log.warning(
            "authentication failed",
            extra={
                "reason": reason.value,
                "ip": failure.ip,
                "key_prefix": failure.key_prefix,
                "path": attempt.path,
            },
        )
        raise error


def caller_actor(connection: ASGIConnection[Any, Any, Any, Any], key: ApiKeyRecord) -> Actor:
    """The audit log's actor for a request the guard admitted: the key (id and prefix) and the client address."""
    ip = connection_client_ip(connection)
    return Actor.api_key(
        key.id, key.display_prefix, ip=None if ip is None else str(ip), user_agent=connection.headers.get("user-agent")
    )


async def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler) -> None:
    """Litestar guard for every ``/api`` route: checks the route's scope from ``ROUTE_SCOPES``."""
    required = route_handler.opt.get("scope")
    if required is PUBLIC:
        return
    if not isinstance(required, Scope):  # a route nobody assigned a scope to is never served
        raise InsufficientScope()
    attempt = Attempt(
        token=bearer_token(connection.headers.get("authorization")),
        ip=connection_client_ip(connection),
        required=required,
        method=str(connection.scope.get("method", "GET")),
        path=connection.scope["path"],
        user_agent=connection.headers.get("user-agent"),
    )
    # ``connection.state`` would build a new ``State`` wrapper around this same dict on every access.
    connection.scope["state"]["api_key"] = await connection.app.state.authenticator.authenticate(attempt)
    await enforce_rate_limit(connection, required)  # 429 after the scope check
