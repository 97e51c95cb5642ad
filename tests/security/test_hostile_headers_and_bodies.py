"""Hostile input against a live server: control characters in anything that becomes a header, header lines over
RFC 5322's limit, request bodies that are not UTF-8 or nest deeply, and a bounded random sweep of every JSON
route with arbitrary bytes. Both database engines (the ``target`` fixture)."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from postroom.auth.scopes import ROUTE_SCOPES
from tests.conftest import bearer
from tests.security.conftest import SecurityTarget
from tests.security.test_hostile_input import _fuzz_route
from tests.support.smtp_sink import SmtpSink

# Every C0 control but TAB (CR, LF and NUL were refused before; the rest were not), DEL, C1, and U+2028/2029.
CONTROLS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\u2028"]
MARKER = "hostile-header-marker"


def _send(target: SecurityTarget, **fields: Any) -> httpx.Response:
    body = {"from": f"a@{target.a.domain}", "to": ["victim@example.test"], "subject": MARKER, "text": "x", **fields}
    return httpx.post(target.server.api_url + "/emails", json=body, headers=bearer(target.a.full_key), timeout=30)


def _api(target: SecurityTarget, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, target.server.api_url + path, headers=bearer(target.a.full_key), timeout=30, **kwargs)


def _fields(control: str) -> list[tuple[dict[str, Any], str]]:
    value = f"a{control}b"
    return [
        ({"subject": value}, "subject"),
        ({"from_name": value}, "from_name"),
        ({"reply_to": "r@example.test", "reply_to_name": value}, "reply_to_name"),
        ({"headers": {"X-Campaign": value}}, "headers.X-Campaign"),
        ({"attachments": [{"name": f"{value}.txt", "type": "text/plain", "data": "eA=="}]}, "attachments.0.name"),
    ]


@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_a_control_character_in_any_header_field_gets_422_naming_it(
    target: SecurityTarget, smtp_sink: SmtpSink, control: str
) -> None:
    for fields, field in _fields(control):
        response = _send(target, **fields)
        assert response.status_code == 422, (field, response.text)
        assert field in response.json()["errors"], response.json()
    assert not any(MARKER.encode() in m.data for m in smtp_sink.messages)


def test_a_tab_is_still_allowed(target: SecurityTarget) -> None:
    # Delivered: its subject must not carry MARKER, which the other tests expect never to arrive.
    assert _send(target, subject="tab\tok", headers={"X-Tab": "a\tb"}).status_code == 200


@pytest.fixture(scope="module")
def template_slug(target: SecurityTarget) -> str:
    response = _api(
        target, "POST", "/templates", json={"name": "Hostile subject", "html": "<p>x</p>", "subject": "Hi {{name}}"}
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["data"]["slug"])


@pytest.mark.parametrize("control", ["\x0b", "\r\nBcc: stolen@evil.test", "\x1e", "\u2029"])
def test_a_template_subject_that_renders_to_a_control_character_gets_422_naming_the_subject(
    target: SecurityTarget, smtp_sink: SmtpSink, template_slug: str, control: str
) -> None:
    body = {
        "from": f"a@{target.a.domain}",
        "to": ["ok@example.test", "victim@example.test"],
        "template_slug": template_slug,
        "substitution_data": {"name": "Mallory"},
    }
    assert _api(target, "POST", "/emails", json=body).status_code == 200  # harmless data renders fine
    body["substitution_data"] = {"name": f"x{control}"}
    response = _api(target, "POST", "/emails", json=body)
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == ["subject"]
    # A from name rendered from the data is checked the same way.
    body["substitution_data"] = {"name": "fine", "who": f"Eve{control}"}
    response = _api(target, "POST", "/emails", json={**body, "from_name": "{{who}}"})
    assert response.status_code == 422 and list(response.json()["errors"]) == ["from_name"], response.text
    assert not any(b"stolen@evil.test" in m.data for m in smtp_sink.messages)


@pytest.mark.parametrize("field", ["subject", "name"])
def test_a_template_saved_with_a_control_character_in_its_subject_or_name_gets_422(
    target: SecurityTarget, field: str
) -> None:
    body = {"name": "Plain name", "html": "<p>x</p>", field: "bad\x0bvalue"}
    response = _api(target, "POST", "/templates", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["errors"]


def test_a_header_name_too_long_or_a_value_that_cannot_be_folded_gets_422_naming_the_header(
    target: SecurityTarget,
) -> None:
    long_name = "X-" + "n" * 100
    response = _send(target, headers={long_name: "v"})
    assert response.status_code == 422 and f"headers.{long_name}" in response.json()["errors"], response.text
    response = _send(target, headers={"X-Unbroken": "a" * 998})
    assert response.status_code == 422 and "headers.X-Unbroken" in response.json()["errors"], response.text


def _delivered(sink: SmtpSink, marker: str, timeout: float = 30) -> email.message.EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for received in sink.messages:
            if marker.encode() in received.data:
                parsed = email.message_from_bytes(received.data, policy=email.policy.default)
                assert isinstance(parsed, email.message.EmailMessage)
                assert max(len(line) for line in received.data.split(b"\r\n")) <= 998
                return parsed
        time.sleep(0.1)
    raise AssertionError(f"no message with {marker} arrived")


def test_a_998_character_header_value_with_spaces_is_folded_and_delivered_whole(
    target: SecurityTarget, smtp_sink: SmtpSink
) -> None:
    value = ("word " * 199 + "end")[:998]
    marker = f"folded-delivery-{target.backend.name}"
    subject = f"{marker} " + "s" * (989 - len(marker))  # 990 characters: "Subject: " and it make a line of 999
    response = _send(target, subject=subject, headers={"X-Very-Long-Header-Name-For-Folding": value})
    assert response.status_code == 200, response.text
    parsed = _delivered(smtp_sink, marker)
    assert parsed["X-Very-Long-Header-Name-For-Folding"] == value.strip()
    assert parsed["Subject"] == subject


# -- request bodies that are not JSON a route can read -------------------------------------------------------


@pytest.fixture(scope="module")
def json_routes(target: SecurityTarget, template_slug: str) -> list[tuple[str, str, str]]:
    """Every POST, PUT and PATCH route of ROUTE_SCOPES: (method, route, path with its parameters filled in)."""
    webhook = _api(
        target,
        "POST",
        "/webhooks",
        json={"name": "sweep", "url": "http://127.0.0.1:9/hook", "auth_type": "none", "events_mode": "all"},
    )
    assert webhook.status_code in (200, 201), webhook.text
    values = {
        "slug": template_slug,
        "webhook_id": str(webhook.json()["data"]["id"]),
        "domain": "not-registered.test",  # those routes read no body; a real domain's DKIM would be rotated
        "delivery_id": "1",
    }
    routes = []
    for method, path in sorted(ROUTE_SCOPES):
        if method in ("POST", "PUT", "PATCH"):
            routes.append((method, path, re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "missing"), path)))
    assert ("POST", "/api/emails", "/api/emails") in routes and len(routes) >= 12
    return routes


BAD_BODIES = {
    "nested arrays 990 deep": b'{"to": ' + b"[" * 990 + b"]" * 990 + b"}",
    "nested objects 990 deep": b'{"a": ' * 990 + b"1" + b"}" * 990,
    "nested 100 deep": b'{"substitution_data": ' + b'{"a": ' * 100 + b"1" + b"}" * 101,
    "invalid UTF-8 in a string": b'{"subject": "\xff\xfe"}',
    "invalid UTF-8 alone": b"\xff",
    "a lone surrogate escape": b'{"subject": "\\ud800"}',
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_deep_or_non_utf8_bodies_get_a_lettr_4xx_on_every_json_route_and_one_log_line(
    target: SecurityTarget, json_routes: list[tuple[str, str, str]], name: str
) -> None:
    before = target.server.log_text()
    documented = httpx.get(target.server.base_url + "/schema/openapi.json").json()["paths"]
    body_routes = {
        (method, route) for method, route, _ in json_routes if "requestBody" in documented[route][method.lower()]
    }
    assert len(body_routes) >= 9, sorted(body_routes)
    with httpx.Client(timeout=30) as http:
        for method, route, path in json_routes:
            response = http.request(
                method,
                target.server.base_url + path,
                content=BAD_BODIES[name],
                headers={**bearer(target.a.full_key), "Content-Type": "application/json"},
            )
            assert 400 <= response.status_code < 500, f"{method} {path}: {response.status_code} {response.text[:300]}"
            if (method, route) in body_routes:
                assert response.status_code == 422 and "body" in response.json()["errors"], (path, response.text)
            answer = response.json()
            assert isinstance(answer.get("message"), str) and isinstance(answer.get("error_code"), str), answer
    logged = target.server.log_text()[len(before) :]
    assert "Traceback" not in logged and "unhandled error" not in logged, logged[-3000:]


def test_a_refused_body_is_one_log_line(target: SecurityTarget) -> None:
    before = target.server.log_text()
    response = _api(target, "POST", "/emails", content=BAD_BODIES["nested arrays 990 deep"])
    assert response.status_code == 422 and "body" in response.json()["errors"], response.text
    deadline = time.monotonic() + 10
    while "request body refused" not in target.server.log_text()[len(before) :] and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = [line for line in target.server.log_text()[len(before) :].splitlines() if line.strip()]
    assert len([line for line in logged if "request body refused" in line]) == 1, logged
    assert not any("Traceback" in line or '"level": "error"' in line for line in logged), logged


def _nested(depth: int, leaf: bytes) -> bytes:
    return b'{"a": ' * depth + leaf + b"}" * depth


BODY_BYTES = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=15,
    ).map(lambda value: json.dumps(value).encode()),
    st.builds(_nested, st.integers(min_value=1, max_value=3000), st.sampled_from([b"1", b'"\xff"', b"[]", b"{"])),
    st.builds(
        lambda prefix, junk: b'{"subject": "' + prefix.encode() + junk + b'"}',
        st.text(max_size=10),
        st.binary(min_size=1, max_size=8),
    ),
)
SWEEP_EXAMPLES = 25
"""Per route: with 12 routes, 300 requests per engine."""


def test_arbitrary_bytes_on_every_json_route_never_get_a_server_error(
    target: SecurityTarget, json_routes: list[tuple[str, str, str]]
) -> None:
    failures: list[str] = []
    with httpx.Client(timeout=30) as http:
        for method, _, path in json_routes:
            try:
                _fuzz_route(http, target, method, path, BODY_BYTES, SWEEP_EXAMPLES)
            except AssertionError as exc:
                failures.append(str(exc)[:1000])
    assert not failures, "\n".join(failures)
    assert "Traceback" not in target.server.log_text()
