"""``GET /api/health`` and ``GET /api/health/ready`` (public), and ``GET /api/auth/check``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from postroom.apikeys.guard import CallerKey
from postroom.core.clock import iso_event, utcnow
from postroom.core.envelope import envelope
from postroom.core.openapi import ErrorBody, documented, envelope_of
from postroom.jobs.report import DispatcherReport
from postroom.jobs.report import report as dispatcher_report
from postroom.system import queries, schemas
from postroom.system.identity import config_warnings


@get(
    "/health",
    sync_to_thread=False,
    responses=documented(200, envelope_of(schemas.Health, "HealthResponse"), public=True),
)
def health() -> dict[str, Any]:
    """Public: answers without a key and ignores any ``Authorization`` header sent anyway."""
    return envelope("Health check passed.", {"status": "ok", "timestamp": iso_event(utcnow())})


READY_TIMEOUT_SECONDS = 2.0
log = logging.getLogger("postroom.system")

NOT_READY_MESSAGES = {
    "database_unreachable": "The database is not reachable.",
    "disk_full": "The database's disk is full: nothing can be stored.",
    "read_only": "The database is read-only (a standby): nothing can be stored.",
    "io_error": "The database cannot write to its disk.",
    "dispatcher_disconnected": "The dispatcher has lost its database connection; nothing is being delivered.",
}


def _dispatcher_json(report: DispatcherReport) -> dict[str, Any]:
    return {
        "connected": report.connected,
        "last_claim_at": iso_event(report.last_claim_at) if report.last_claim_at else None,
        "backlog": report.backlog,
        "oldest_due_age_seconds": report.oldest_due_age_seconds,
    }


@get(
    "/health/ready",
    responses={
        **documented(200, envelope_of(schemas.Readiness, "ReadinessResponse"), public=True),
        503: ResponseSpec(
            ErrorBody,
            description="Not ready: ``reason`` is database_unreachable, disk_full, read_only, io_error or "
            "dispatcher_disconnected; see Retry-After.",
            generate_examples=False,
        ),
    },
)
async def ready(state: State) -> Response[dict[str, Any]]:
    """Public readiness for load balancers and orchestrators: 200 once the database answers and can store data
    (and, in a process that runs the dispatcher, the dispatcher reaches it), else 503 with the ``reason``.

    ``/api/health`` says the process is alive; this says it can do its work, so a balancer takes an API process
    whose database connection is down out of rotation instead of sending it traffic that would fail.

    ``warnings`` lists what is wrong with the configuration but does not stop the server working, each as
    ``{"code": …, "message": …}``; empty when there is nothing to say. ``mail_hostname``: the mail identity is not a
    public DNS name (``postroom.system.identity``).
    """
    db = state.db
    try:
        ok = await asyncio.wait_for(db.read(queries.database_answers), READY_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to reach the database means "not ready", never a 500
        log.warning("readiness check failed: %s", type(exc).__name__)
        ok = False
    reason = None if ok else "database_unreachable"
    reason = reason or db.write_problem()
    dispatcher = state.get("dispatcher")
    report = None
    if dispatcher is not None:
        report = await dispatcher_report(db, dispatcher)
        if reason is None and not report.connected:
            reason = "dispatcher_disconnected"
    if reason is not None:
        body: dict[str, Any] = {"message": NOT_READY_MESSAGES[reason], "error_code": "not_ready", "reason": reason}
        if report is not None:
            body["dispatcher"] = _dispatcher_json(report)
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    data: dict[str, Any] = {
        "status": "ready",
        "timestamp": iso_event(utcnow()),
        "warnings": config_warnings(state.settings),
    }
    if report is not None:
        data["dispatcher"] = _dispatcher_json(report)
    return Response(envelope("Ready.", data), status_code=200)


@get("/auth/check", sync_to_thread=False, responses=documented(200, envelope_of(schemas.KeyCheck, "KeyCheckResponse")))
def auth_check(api_key: CallerKey) -> dict[str, Any]:
    return envelope("API key is valid.", {"team_id": api_key.team_id, "timestamp": iso_event(utcnow())})
