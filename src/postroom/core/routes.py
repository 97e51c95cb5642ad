"""Route tables: every route of a surface gets its entry from one table, decided in one place.

The API takes each route's scope from ``ROUTE_SCOPES`` and the dashboard each page's access from ``PAGE_ACCESS``.
Both refuse to start when a route has no entry or an entry names no route, so nothing is served undecided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from litestar.handlers import BaseRouteHandler


def assign_route_table(
    routes: Iterable[tuple[BaseRouteHandler, str, str]],
    table: Mapping[tuple[str, str], Any],
    *,
    opt: str,
    table_name: str,
    surface: str,
    served_apart: Iterable[tuple[str, str]] = (),
) -> None:
    """Put ``table[(method, path)]`` into ``handler.opt[opt]`` for each ``(handler, method, path)`` of ``routes``.

    ``served_apart`` are entries whose routes are built elsewhere (they count as present).
    """
    seen = set(served_apart)
    for handler, method, path in routes:
        key = (method, path)
        if key not in table:
            raise RuntimeError(f"{surface} route {method} {path} has no entry in {table_name}")
        handler.opt[opt] = table[key]
        seen.add(key)
    unused = set(table) - seen
    if unused:
        raise RuntimeError(f"{table_name} names {surface} routes that do not exist: {sorted(unused)}")
