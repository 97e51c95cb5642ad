"""Assembling the web application: routes, the guard, error rendering, metrics.

The scope each ``/api`` route needs comes from ``postroom.auth.scopes.ROUTE_SCOPES``; building the app fails if a
route has no entry there or an entry names no route, so no route can slip through without a decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from postroom import __version__
from postroom.apikeys.guard import Authenticator, api_key_guard
from postroom.apikeys.service import ApiKeyRecord
from postroom.audience import api as audience_api
from postroom.auth.ratelimit import RateLimiter, add_rate_limit_headers
from postroom.auth.scopes import PUBLIC, ROUTE_SCOPES
from postroom.config import Settings
from postroom.core.routes import assign_route_table
from postroom.dashboard import routes as dashboard
from postroom.db.engine import Database
from postroom.db.errors import database_unavailable
from postroom.domains import api as domains_api
from postroom.emails import api as emails_api
from postroom.errors import DatabaseUnavailable, MethodNotAllowed, NotFound, PostroomError, ValidationFailed
from postroom.jobs.base import Dispatcher
from postroom.observability import metrics as prom
from postroom.system import api as system_api
from postroom.system.metrics import metrics
from postroom.teams import api as teams_api
from postroom.templates import api as templates_api
from postroom.tracking import api as tracking_api
from postroom.tracking.recorder import EventRecorder
from postroom.webhooks import api as webhooks_api

log = logging.getLogger("postroom.app")

MAX_REQUEST_BODY = 12 * 1024 * 1024
"""Larger bodies get 413 before they are read: 10 MB of attachments plus the rest of a send."""

API_HANDLERS = [
    system_api.health,
    system_api.ready,
    system_api.auth_check,
    teams_api.list_projects,
    *emails_api.HANDLERS,
    *domains_api.HANDLERS,
    *templates_api.HANDLERS,
    *webhooks_api.HANDLERS,
    *audience_api.HANDLERS,
]


def _error_response(error: PostroomError) -> Response[Any]:
    return Response(content=error.body(), status_code=error.status, headers=error.headers)


def _postroom_error(_: Request[Any, Any, Any], exc: PostroomError) -> Response[Any]:
    return _error_response(exc)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors: dict[str, list[str]] = {}
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            errors.setdefault(str(item.get("key") or "body"), []).append(str(item.get("message", "is invalid")))
    return _error_response(ValidationFailed(errors or {"body": [str(exc.detail)]}))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return _error_response(NotFound())
    if isinstance(exc, MethodNotAllowedException):
        return _error_response(MethodNotAllowed(headers=dict(exc.headers or {})))
    body: dict[str, Any] = {"message": exc.detail or "The request could not be handled."}
    body["error_code"] = {413: "payload_too_large"}.get(
        exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error"
    )
    return Response(content=body, status_code=exc.status_code, headers=dict(exc.headers or {}))


def _unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return _error_response(DatabaseUnavailable())
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(PostroomError())


def _provide_api_key(request: Request[Any, Any, Any]) -> ApiKeyRecord:
    key: ApiKeyRecord = request.scope["state"]["api_key"]
    return key


def _assign_route_scopes(app: Litestar) -> None:
    """Copy each ``/api`` route's scope from ``ROUTE_SCOPES`` onto its handler; refuse any mismatch."""
    routes: list[tuple[BaseRouteHandler, str, str]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path_format.startswith("/api"):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if method == "OPTIONS":
                handler.opt["scope"] = PUBLIC  # the automatic preflight answer: lists allowed methods, no data
            else:
                routes.append((handler, method, route.path_format))
    assign_route_table(routes, ROUTE_SCOPES, opt="scope", table_name="ROUTE_SCOPES", surface="API")


def _metrics_middleware(app: ASGIApp) -> ASGIApp:
    # ``labels()`` checks and converts its arguments on every call: each series is looked up once.
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_with_status)
        finally:
            labels = (scope.get("method", ""), scope.get("path_template") or "unmatched", status)
            series = children.get(labels)
            if series is None:
                method, route, _ = labels
                series = children[labels] = (
                    prom.HTTP_REQUESTS.labels(method, route, str(status)),
                    prom.HTTP_LATENCY.labels(route),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)

    return middleware


def build_app(
    settings: Settings,
    db: Database,
    *,
    on_startup: list[Callable[[], Any]] | None = None,
    on_shutdown: list[Callable[[], Any]] | None = None,
    wake_worker: Callable[[], None] | None = None,
    metrics_dir: str | None = None,
    dispatcher: Dispatcher | None = None,
) -> Litestar:
    """The web application; ``wake_worker`` is called after a send commits (the embedded worker's doorbell).

    ``metrics_dir`` is where the processes of ``postroom api --processes N`` keep their metrics; ``/metrics`` then
    reports their sum (prometheus_client's multiprocess mode), whichever process answers the scrape."""
    rate_limiter = RateLimiter.from_settings(settings)
    tracking_recorder = EventRecorder(db, write_behind=settings.tracking_write_behind)
    api = Router(
        path="/api",
        route_handlers=API_HANDLERS,
        guards=[api_key_guard],
        dependencies={"api_key": Provide(_provide_api_key, sync_to_thread=False)},
    )
    app = Litestar(
        route_handlers=[api, metrics, dashboard.router(), tracking_api.router()],
        exception_handlers={
            PostroomError: _postroom_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        middleware=[_metrics_middleware],
        state=State(
            {
                "settings": settings,
                "db": db,
                "authenticator": Authenticator(db, settings),
                "rate_limiter": rate_limiter,
                "tracking_recorder": tracking_recorder,
                "wake_worker": wake_worker or (lambda: None),
                "metrics_dir": metrics_dir,
                "dispatcher": dispatcher,  # readiness and /metrics report it
            }
        ),
        request_max_body_size=MAX_REQUEST_BODY,
        openapi_config=OpenAPIConfig(title="Postroom (Lettr API)", version=__version__, path="/schema"),
        on_startup=on_startup or [],
        on_shutdown=[tracking_recorder.close, *(on_shutdown or []), rate_limiter.close],
        before_send=[add_rate_limit_headers],
        debug=False,
        logging_config=None,  # postroom.observability.logging owns the log format
    )
    _assign_route_scopes(app)
    return app
