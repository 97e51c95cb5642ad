"""``assign_route_table``: every route gets its table entry, and the table names only routes that exist."""

from __future__ import annotations

import pytest
from litestar import get, post

from postroom.core.routes import assign_route_table


@get("/a", sync_to_thread=False)
def read_a() -> None:
    return None


@post("/a", sync_to_thread=False)
def write_a() -> None:
    return None


def test_each_route_gets_its_entry() -> None:
    routes = [(read_a, "GET", "/a"), (write_a, "POST", "/a")]
    assign_route_table(routes, {("GET", "/a"): "read", ("POST", "/a"): "write"}, opt="x", table_name="T", surface="s")
    assert read_a.opt["x"] == "read"
    assert write_a.opt["x"] == "write"


def test_a_route_without_an_entry_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"s route POST /a has no entry in T"):
        assign_route_table(
            [(read_a, "GET", "/a"), (write_a, "POST", "/a")], {("GET", "/a"): 1}, opt="y", table_name="T", surface="s"
        )


def test_an_entry_without_a_route_is_refused_unless_served_apart() -> None:
    table = {("GET", "/a"): 1, ("GET", "/static"): 2}
    with pytest.raises(RuntimeError, match=r"T names s routes that do not exist: \[\('GET', '/static'\)\]"):
        assign_route_table([(read_a, "GET", "/a")], table, opt="z", table_name="T", surface="s")
    assign_route_table(
        [(read_a, "GET", "/a")], table, opt="z", table_name="T", surface="s", served_apart=[("GET", "/static")]
    )
    assert read_a.opt["z"] == 1
