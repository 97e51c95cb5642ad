"""The dashboard over HTTP on both engines: the session cookie's attributes over HTTPS (through a trusted proxy)
and plain HTTP, HTTPS required away from loopback, cross-site posts refused even with a valid token, sign-out
ending the session on the server, and every dashboard route assigned an access rule."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from postroom.apikeys import service as keys_service
from postroom.auth.passwords import hash_password
from postroom.core.clock import utcnow
from postroom.dashboard import accounts
from postroom.dashboard.policy import PAGE_ACCESS
from tests.conftest import Backend, Server, run_cli

PASSWORD = "a long enough password"
HTTPS_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture
def member(backend: Backend) -> str:
    email = f"http-{secrets.token_hex(4)}@dashboard.test"
    now = utcnow()
    operator = accounts.Actor(name="tests", ip=None)

    def make(conn):  # type: ignore[no-untyped-def]
        _, token = accounts.create_setup_link(conn, team_id=backend.team_id, email=email, actor=operator, now=now)
        accounts.accept_invitation(
            conn, token=token, new_password_hash=hash_password(PASSWORD), existing_user_id=None, actor=operator, now=now
        )

    backend.write(make)
    return email


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([0-9a-f]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client: httpx.Client, email: str, headers: dict[str, str] | None = None) -> httpx.Response:
    page = client.get("/login", headers=headers)
    assert page.status_code == 200, page.text
    return client.post(
        "/login", data={"_csrf": csrf_of(page.text), "email": email, "password": PASSWORD}, headers=headers
    )


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        yield http


def test_behind_a_tls_proxy_the_session_cookie_is_host_prefixed_secure_httponly_lax(
    proxied_server: Server, member: str
) -> None:
    with httpx.Client(base_url=proxied_server.base_url, timeout=10) as http:
        page = http.get("/login", headers=HTTPS_PROXY)
        assert page.status_code == 200
        assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        presession = page.headers["set-cookie"]
        assert presession.startswith("__Host-postroom_presession=") and "Secure" in presession
        # httpx does not send Secure cookies over http, so hand the pre-session cookie back explicitly.
        nonce = presession.split(";", 1)[0].split("=", 1)[1]
        answer = http.post(
            "/login",
            data={"_csrf": csrf_of(page.text), "email": member, "password": PASSWORD},
            headers={**HTTPS_PROXY, "Cookie": f"__Host-postroom_presession={nonce}"},
        )
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert name_value.startswith("__Host-postroom_session=") and len(name_value.split("=", 1)[1]) == 43
    assert sorted(attributes) == ["HttpOnly", "Path=/", "SameSite=lax", "Secure"]


def test_plain_http_from_another_machine_is_refused(proxied_server: Server) -> None:
    refused = httpx.get(proxied_server.base_url + "/login", headers={"X-Forwarded-For": "203.0.113.7"})
    assert refused.status_code == 403 and "HTTPS" in refused.text


def test_on_loopback_plain_http_gets_a_plain_httponly_cookie(client: httpx.Client, member: str) -> None:
    answer = sign_in(client, member)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("postroom_session=") and "HttpOnly" in cookie and "Secure" not in cookie
    home = client.get("/")
    assert home.status_code == 200 and member in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert home.headers["cache-control"] == "no-store" and home.headers["x-frame-options"] == "DENY"


def test_a_cross_site_post_is_refused_even_with_a_valid_token(client: httpx.Client, member: str) -> None:
    sign_in(client, member)
    token = csrf_of(client.get("/account").text)
    action = "/account/sessions/revoke-others"
    assert client.post(action, data={"_csrf": token}, headers={"Origin": "https://evil.test"}).status_code == 403
    assert client.post(action, data={"_csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post(action, data={"_csrf": "0" * 64}).status_code == 403
    same_origin = client.post(action, data={"_csrf": token}, headers={"Origin": str(client.base_url).rstrip("/")})
    assert same_origin.status_code == 303


def test_signing_out_ends_the_session_on_the_server_and_a_planted_id_is_never_kept(
    client: httpx.Client, member: str
) -> None:
    host = httpx.URL(str(client.base_url)).host
    client.cookies.set("postroom_session", "planted-by-an-attacker", domain=host, path="/")
    answer = sign_in(client, member)
    issued = answer.cookies.get("postroom_session")
    assert issued and issued != "planted-by-an-attacker"
    token = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"_csrf": token}).status_code == 303
    with httpx.Client(base_url=str(client.base_url), cookies={"postroom_session": issued}) as replay:
        answer = replay.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_a_wrong_password_gets_one_generic_answer(client: httpx.Client, member: str) -> None:
    page = client.get("/login")
    wrong = client.post("/login", data={"_csrf": csrf_of(page.text), "email": member, "password": "not it at all"})
    unknown = client.post(
        "/login", data={"_csrf": csrf_of(page.text), "email": "nobody@dashboard.test", "password": "not it at all"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "The email address or password is not correct." in wrong.text and "not correct" in unknown.text


def test_every_dashboard_route_has_an_access_rule_and_pages_need_a_session(server: Server) -> None:
    for (method, path), _ in PAGE_ACCESS.items():
        if method != "GET" or "{" in path or path in ("/login",):
            continue
        answer = httpx.get(server.base_url + path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path


def test_create_admin_prints_a_one_time_link_and_refuses_a_bad_address(backend: Backend) -> None:
    made = run_cli(backend, "users", "create-admin", "Admin@Dashboard.Test")
    assert made.returncode == 0, made.stderr
    assert "admin@dashboard.test" in made.stdout and re.search(r"/invite/[A-Za-z0-9_-]{43}\s*$", made.stdout)
    bad = run_cli(backend, "users", "create-admin", "not-an-address")
    assert bad.returncode == 2 and "email: Enter a valid email address." in bad.stderr


def test_rotating_a_key_in_the_dashboard_keeps_its_expiry_or_takes_the_one_given(
    client: httpx.Client, member: str, backend: Backend
) -> None:
    from datetime import timedelta

    expiring = backend.create_key(
        permission="sending", name="Dashboard rotation", expires_at=utcnow() + timedelta(days=1)
    )
    sign_in(client, member)

    def rotate(key_id: str, expires_in_days: str) -> httpx.Response:
        token = csrf_of(client.get(f"/settings/api-keys/{key_id}").text)
        form = {"_csrf": token, "grace_hours": "0", "expires_in_days": expires_in_days}
        return client.post(f"/settings/api-keys/{key_id}/rotate", data=form)

    def successor_of(key_id: str) -> Any:
        keys = backend.read(lambda conn: keys_service.list_keys(conn, team_id=backend.team_id))
        [successor] = [k for k in keys if k.rotated_from_id == key_id]
        return successor

    answer = rotate(expiring.record.id, "")
    assert answer.status_code == 200, answer.text
    inherited = successor_of(expiring.record.id)
    assert inherited.expires_at == expiring.record.expires_at
    assert "expires " in answer.text and "never expires" not in answer.text

    answer = rotate(inherited.id, "30")
    assert answer.status_code == 200, answer.text
    chosen = successor_of(inherited.id)
    assert chosen.expires_at is not None
    assert timedelta(days=29, hours=23) < chosen.expires_at - utcnow() <= timedelta(days=30)

    refused = rotate(chosen.id, "soon")
    assert refused.status_code == 422 and "The expiry must be a whole number of days." in refused.text
    assert backend.get_key(chosen.id).status(utcnow()) == "active"  # nothing was rotated
