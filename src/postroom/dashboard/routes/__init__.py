"""The dashboard's routes, assembled into one router with its guard, error pages and static files.

``router()`` refuses to build when a route has no entry in ``PAGE_ACCESS`` or an entry names no route, the same
promise ``ROUTE_SCOPES`` makes for the API: no page can be added without deciding who may see it.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.handlers import HTTPRouteHandler
from litestar.static_files import create_static_files_router

from postroom.core.routes import assign_route_table
from postroom.dashboard.policy import PAGE_ACCESS, Stage
from postroom.dashboard.routes import account, content, domains, emails, inbox, keys, overview, signin, team
from postroom.dashboard.web import EXCEPTION_HANDLERS, STATIC_DIR, dashboard_guard

HANDLERS: list[HTTPRouteHandler] = [
    *signin.HANDLERS,
    *account.HANDLERS,
    *overview.HANDLERS,
    *keys.HANDLERS,
    *team.HANDLERS,
    *emails.HANDLERS,
    *inbox.HANDLERS,
    *domains.HANDLERS,
    *content.HANDLERS,
]

STATIC_PATH = "/static/{file_path}"
_PARAM_TYPE = re.compile(r"\{(\w+):[^}]+\}")


def _template(path: str) -> str:
    return _PARAM_TYPE.sub(r"{\1}", "/" + path.strip("/"))


def _assign_access(handlers: list[HTTPRouteHandler]) -> None:
    routes = [
        (handler, method, _template(path))
        for handler in handlers
        for path in handler.paths
        for method in handler.http_methods
    ]
    static = [("GET", STATIC_PATH), ("HEAD", STATIC_PATH)]  # the static files router is built in ``router()``
    assign_route_table(
        routes, PAGE_ACCESS, opt="access", table_name="PAGE_ACCESS", surface="dashboard", served_apart=static
    )


def router() -> Router:
    """The dashboard, mounted at ``/`` next to ``/api`` and ``/metrics``."""
    _assign_access(HANDLERS)
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        opt={"access": PAGE_ACCESS[("GET", STATIC_PATH)], "static": True},
        cache_control=CacheControlHeader(max_age=3600, private=True),
        include_in_schema=False,
    )
    assert PAGE_ACCESS[("GET", STATIC_PATH)] is Stage.PUBLIC
    route_handlers: list[Any] = [*HANDLERS, static]
    return Router(
        path="/",
        route_handlers=route_handlers,
        guards=[dashboard_guard],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        include_in_schema=False,
    )
