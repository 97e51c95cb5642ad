"""Authentication and authorisation exactly as Lettr answers them, against a live server, on both databases."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import httpx
import pytest
from lettr import Lettr
from lettr._exceptions import AuthenticationError, ForbiddenError
from litestar.routes import HTTPRoute

from postroom.app import build_app
from postroom.audit.service import Actor
from postroom.auth.keys import generate_key
from postroom.auth.scopes import PUBLIC, ROUTE_SCOPES
from postroom.core.clock import utcnow
from tests.conftest import Backend, Server, bearer, http_from

REQUIRED = {"message": "API key is required."}
INVALID = {"message": "Invalid API key."}
IP_DENIED = {"message": "Access denied. Your IP address is not allowed."}
INSUFFICIENT = {
    "message": "Your API key does not have the required permissions for this action.",
    "error_code": "insufficient_scope",
}
SEND_ROUTES = {("POST", "/api/emails"), ("POST", "/api/emails/scheduled")}


def api_routes(backend: Backend) -> list[tuple[str, str]]:
    """Every (method, path) the application serves under /api, read from its router."""
    app = build_app(backend.settings, backend.db)
    routes: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path_format.startswith("/api"):
            routes.extend((m, route.path_format) for m in route.route_handler_map if m != "OPTIONS")
    return sorted(routes)


def call(server: Server, method: str, path: str, key: str | None, source: str = "127.0.0.1") -> httpx.Response:
    concrete = re.sub(r"\{[^}]+\}", "example", path)
    headers = {} if key is None else bearer(key)
    with http_from(source) as http:
        return http.request(method, server.base_url + concrete, headers=headers, json={} if method != "GET" else None)


# -- 401 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "bearer"}],
    ids=["absent", "empty", "bearer-only", "lowercase-bearer-only"],
)
def test_a_request_without_a_key_gets_401_key_required(server: Server, headers: dict[str, str]) -> None:
    with http_from() as http:
        response = http.get(server.api_url + "/auth/check", headers=headers)
    assert response.status_code == 401
    assert response.json() == REQUIRED


def _mutated(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize("case", ["malformed", "bad-checksum", "unknown", "other-scheme", "revoked", "expired"])
def test_every_unusable_key_gets_401_invalid_key(server: Server, backend: Backend, case: str) -> None:
    from postroom.apikeys import service

    valid = backend.create_key()
    header = f"Bearer {valid.key}"
    if case == "malformed":
        header = "Bearer lttr_abc"
    elif case == "bad-checksum":
        header = f"Bearer {_mutated(valid.key)}"
    elif case == "unknown":
        header = f"Bearer {generate_key()}"
    elif case == "other-scheme":
        header = f"Basic {valid.key}"
    elif case == "revoked":
        backend.write(
            lambda conn: service.revoke_key(
                conn, key_id=valid.record.id, team_id=None, actor=Actor(name="tests"), now=utcnow()
            )
        )
    elif case == "expired":
        expired = backend.create_key(expires_at=utcnow() - timedelta(seconds=1))
        header = f"Bearer {expired.key}"
    with http_from() as http:
        response = http.get(server.api_url + "/auth/check", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json() == INVALID


def test_a_key_stops_at_its_expiry(server: Server, backend: Backend) -> None:
    created = backend.create_key(expires_at=utcnow() + timedelta(seconds=1.5))
    client = Lettr(created.key, base_url=server.api_url)
    assert client.auth_check().team_id == backend.team_id
    time.sleep(1.6)
    with pytest.raises(AuthenticationError, match="Invalid API key."):
        client.auth_check()


# -- IP allowlist -------------------------------------------------------------------------------------------


def test_a_request_from_outside_the_allowlist_gets_the_ip_403(server: Server, backend: Backend) -> None:
    created = backend.create_key(allowed_ips="203.0.113.50, 198.51.100.0/24")
    with http_from() as http:
        response = http.get(server.api_url + "/auth/check", headers=bearer(created.key))
    assert response.status_code == 403
    assert response.json() == IP_DENIED
    with pytest.raises(ForbiddenError) as excinfo:
        Lettr(created.key, base_url=server.api_url).projects.list()
    assert str(excinfo.value) == IP_DENIED["message"]
    assert excinfo.value.error_code is None


@pytest.mark.parametrize(
    ("allowlist", "source", "allowed"),
    [
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.2", "127.0.0.3", False),
        ("127.0.0.0/30", "127.0.0.3", True),
        ("127.0.0.0/30", "127.0.0.4", False),
        ("203.0.113.50, 127.0.0.7 ,10.0.0.1", "127.0.0.7", True),
        ("::ffff:127.0.0.8", "127.0.0.8", True),
        ("0.0.0.0/0", "127.0.0.9", True),
        ("::/0", "127.0.0.9", False),
    ],
)
def test_allowlist_admits_exactly_its_addresses(
    server: Server, backend: Backend, allowlist: str, source: str, allowed: bool
) -> None:
    created = backend.create_key(allowed_ips=allowlist)
    response = call(server, "GET", "/api/auth/check", created.key, source=source)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert (response.status_code, response.json()) == (403, IP_DENIED)


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(server: Server, backend: Backend) -> None:
    created = backend.create_key(allowed_ips="203.0.113.7")
    for header in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"}, {"X-Real-IP": "203.0.113.7"}):
        with http_from("127.0.0.2") as http:
            response = http.get(server.api_url + "/auth/check", headers={**bearer(created.key), **header})
        assert (response.status_code, response.json()) == (403, IP_DENIED), header


@pytest.mark.parametrize(
    ("source", "forwarded", "allowlist", "allowed"),
    [
        # trusted peer: the right-most untrusted hop is the client; what the client prepended is ignored
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7"], "203.0.113.7", True),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7"], "6.6.6.6", False),
        # several header lines read as one comma-joined list
        ("127.0.0.1", ["6.6.6.6", "203.0.113.7"], "203.0.113.7", True),
        # a chain through another trusted proxy
        ("127.0.0.1", ["203.0.113.7, 10.1.2.3"], "203.0.113.7", True),
        # a hop that is not an address makes the client unknown: refused by any list
        ("127.0.0.1", ["203.0.113.7, unknown"], "203.0.113.7", False),
        # IPv6 client forwarded by the proxy
        ("127.0.0.1", ["2001:db8::7"], "2001:db8::/64", True),
        # no header: the proxy itself is the client
        ("127.0.0.1", [], "127.0.0.1", True),
        # untrusted peers (IPv4 arriving as ::ffff:127.0.0.2 on a dual-stack socket, and IPv6 ::1)
        ("127.0.0.2", ["203.0.113.7"], "203.0.113.7", False),
        ("127.0.0.2", ["203.0.113.7"], "127.0.0.2", True),
        ("::1", ["203.0.113.7"], "203.0.113.7", False),
        ("::1", [], "::1", True),
        ("::1", [], "127.0.0.1", False),
    ],
)
def test_client_ip_through_trusted_proxies(
    proxied_server: Server, backend: Backend, source: str, forwarded: list[str], allowlist: str, allowed: bool
) -> None:
    created = backend.create_key(allowed_ips=allowlist)
    headers = [("Authorization", f"Bearer {created.key}")] + [("X-Forwarded-For", f) for f in forwarded]
    host = "[::1]" if ":" in source else "127.0.0.1"
    with http_from(source) as http:
        response = http.get(f"http://{host}:{proxied_server.port}/api/auth/check", headers=headers)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert (response.status_code, response.json()) == (403, IP_DENIED)


# -- scopes -------------------------------------------------------------------------------------------------


def test_the_scope_table_covers_the_router_and_only_health_is_public(backend: Backend) -> None:
    routes = api_routes(backend)
    assert ("GET", "/api/auth/check") in routes and ("GET", "/api/projects") in routes
    assert set(routes) == set(ROUTE_SCOPES)
    assert {r for r in routes if ROUTE_SCOPES[r] is PUBLIC} == {("GET", "/api/health"), ("GET", "/api/health/ready")}


def test_sending_only_key_gets_insufficient_scope_on_every_non_send_route(server: Server, backend: Backend) -> None:
    created = backend.create_key(permission="sending")
    checked = 0
    for method, path in api_routes(backend):
        if ROUTE_SCOPES[(method, path)] is PUBLIC:
            continue
        response = call(server, method, path, created.key)
        if (method, path) in SEND_ROUTES:
            assert response.json() != INSUFFICIENT, (method, path)
        else:
            assert (response.status_code, response.json()) == (403, INSUFFICIENT), (method, path)
            checked += 1
    assert checked >= 2
    with pytest.raises(ForbiddenError) as excinfo:
        Lettr(created.key, base_url=server.api_url).projects.list()
    assert excinfo.value.error_code == "insufficient_scope"


def test_full_access_key_reaches_every_route(server: Server, backend: Backend) -> None:
    created = backend.create_key(permission="full")
    for method, path in api_routes(backend):
        response = call(server, method, path, created.key)
        assert response.status_code not in (401, 403), (method, path, response.text)


def test_checks_run_in_lettrs_order(server: Server, backend: Backend) -> None:
    from postroom.apikeys import service

    # a revoked key from a refused address: 401 comes before the IP check
    revoked = backend.create_key(allowed_ips="203.0.113.50")
    backend.write(
        lambda conn: service.revoke_key(
            conn, key_id=revoked.record.id, team_id=None, actor=Actor(name="tests"), now=utcnow()
        )
    )
    assert call(server, "GET", "/api/projects", revoked.key).json() == INVALID
    # a Sending Only key from a refused address on a non-send route: the IP 403, not the scope 403
    sending = backend.create_key(permission="sending", allowed_ips="203.0.113.50")
    assert call(server, "GET", "/api/projects", sending.key).json() == IP_DENIED
    # scope comes before validation: bad query parameters do not change the answer
    sending_anywhere = backend.create_key(permission="sending")
    with http_from() as http:
        response = http.get(server.api_url + "/projects?per_page=x", headers=bearer(sending_anywhere.key))
    assert (response.status_code, response.json()) == (403, INSUFFICIENT)
