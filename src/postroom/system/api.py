"""``GET /api/health`` and ``GET /api/health/ready`` (public), and ``GET /api/auth/check``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from postroom.auth.guard import CallerKey
from postroom.core.clock import iso_event, utcnow
from postroom.core.envelope import envelope
from postroom.core.openapi import ErrorBody, documented, envelope_of
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


@get(
    "/health/ready",
    responses={
        **documented(200, envelope_of(schemas.Readiness, "ReadinessResponse"), public=True),
        503: ResponseSpec(
            ErrorBody, description="The database is not reachable; see Retry-After.", generate_examples=False
        ),
    },
)
async def ready(state: State) -> Response[dict[str, Any]]:
    """Public readiness for load balancers and orchestrators: 200 once the database answers, else 503.

    ``/api/health`` says the process is alive; this says it can do its work, so a balancer takes an API process
    whose database connection is down out of rotation instead of sending it traffic that would fail.

    ``warnings`` lists what is wrong with the configuration but does not stop the server working, each as
    ``{"code": …, "message": …}``; empty when there is nothing to say. ``mail_hostname``: the mail identity is not a
    public DNS name (``postroom.system.identity``).
    """
    try:
        ok = await asyncio.wait_for(state.db.read(queries.database_answers), READY_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure to reach the database means "not ready", never a 500
        log.warning("readiness check failed: %s", type(exc).__name__)
        ok = False
    if not ok:
        return Response(
            {"message": "The database is not reachable.", "error_code": "not_ready"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    warnings = config_warnings(state.settings)
    return Response(
        envelope("Ready.", {"status": "ready", "timestamp": iso_event(utcnow()), "warnings": warnings}),
        status_code=200,
    )


@get("/auth/check", sync_to_thread=False, responses=documented(200, envelope_of(schemas.KeyCheck, "KeyCheckResponse")))
def auth_check(api_key: CallerKey) -> dict[str, Any]:
    return envelope("API key is valid.", {"team_id": api_key.team_id, "timestamp": iso_event(utcnow())})
