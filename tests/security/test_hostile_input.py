"""Hostile input: header injection, oversized input, and random JSON
bodies on every write route.

SSRF vectors for webhook targets (loopback, private, metadata, IPv4-mapped IPv6, decimal and octal forms, DNS
rebinding) live with the webhooks code: tests/unit/test_webhook_ssrf.py and tests/e2e/test_webhooks.py. They are
part of the same CI run and not repeated here.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import bearer
from tests.security.conftest import SecurityTarget
from tests.support.smtp_sink import SmtpSink

MARKER = "hostile-input-marker"
BODY_EXAMPLES = int(os.environ.get("POSTROOM_SCHEMATHESIS_EXAMPLES", "20"))


def _send(target: SecurityTarget, **fields: Any) -> httpx.Response:
    body = {
        "from": f"a@{target.a.domain}",
        "to": ["victim@example.test"],
        "subject": MARKER,
        "text": "x",
        **fields,
    }
    return httpx.post(target.server.api_url + "/emails", json=body, headers=bearer(target.a.full_key), timeout=30)


INJECTIONS = [
    ("subject", {"subject": f"{MARKER}\r\nBcc: stolen@evil.test"}, "subject"),
    ("subject LF", {"subject": f"{MARKER}\nX-Evil: 1"}, "subject"),
    ("subject NUL", {"subject": f"{MARKER}\x00"}, "subject"),
    ("from", {"from": "a@a-sender.test>\r\nRCPT TO:<x@evil.test"}, "from"),
    ("from_name", {"from_name": "Alice\r\nBcc: stolen@evil.test"}, "from_name"),
    ("to", {"to": ["victim@example.test>\r\nRCPT TO:<x@evil.test"]}, "to.0"),
    ("cc", {"cc": ["ok@example.test\nBcc: stolen@evil.test"]}, "cc.0"),
    ("bcc", {"bcc": ["ok@example.test\r\n"]}, "bcc.0"),
    ("reply_to", {"reply_to": "r@example.test\r\nBcc: stolen@evil.test"}, "reply_to"),
    ("two addresses in one", {"to": ["victim@example.test, stolen@evil.test"]}, "to.0"),
    ("header value", {"headers": {"X-Campaign": "a\r\nBcc: stolen@evil.test"}}, "headers"),
    ("header name", {"headers": {"X-Evil\r\nBcc": "stolen@evil.test"}}, "headers"),
    ("header name colon", {"headers": {"X-Evil: 1\r\nBcc": "x"}}, "headers"),
    ("tag", {"tag": "t\r\nBcc: stolen@evil.test"}, "tag"),
    (
        "attachment name",
        {"attachments": [{"name": "a.txt\r\nContent-Type: text/html", "type": "text/plain", "data": "eA=="}]},
        "attachments",
    ),
]


@pytest.mark.parametrize(("case", "fields", "field"), INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_cr_lf_and_nul_in_any_header_field_get_422_naming_it(
    target: SecurityTarget, smtp_sink: SmtpSink, case: str, fields: dict[str, Any], field: str
) -> None:
    response = _send(target, **fields)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(key == field or key.startswith(field) for key in errors), errors
    assert not any(b"stolen@evil.test" in m.data or MARKER.encode() in m.data for m in smtp_sink.messages)


def test_a_body_over_12_mib_gets_413_before_it_is_read(target: SecurityTarget) -> None:
    body = b'{"text": "' + b"a" * (12 * 1024 * 1024 + 1) + b'"}'
    response = httpx.post(
        target.server.api_url + "/emails",
        content=body,
        headers={**bearer(target.a.full_key), "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"


def test_a_chunked_body_over_the_cap_is_cut_off_with_413(target: SecurityTarget) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(13):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    response = httpx.post(
        target.server.api_url + "/emails",
        content=chunks(),
        headers={**bearer(target.a.full_key), "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413


def test_51_recipients_get_422(target: SecurityTarget) -> None:
    response = _send(target, to=[f"r{i}@example.test" for i in range(51)])
    assert response.status_code == 422
    assert any(key.startswith(("to", "recipients")) for key in response.json()["errors"]), response.json()


def test_a_huge_custom_header_in_the_message_gets_422(target: SecurityTarget) -> None:
    response = _send(target, headers={"X-Huge": "a" * 200_000})
    assert response.status_code == 422
    assert "headers" in " ".join(response.json()["errors"])


def test_a_huge_http_request_header_is_refused_without_a_server_error(target: SecurityTarget) -> None:
    """A 1 MiB request header: the HTTP layer refuses it (4xx) or drops the connection, never a 5xx."""
    request = (
        f"GET /api/auth/check HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {target.a.full_key}\r\n"
        f"X-Huge: {'a' * (1024 * 1024)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", target.server.port), timeout=30) as sock:
        try:
            sock.sendall(request)
            answer = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer[:300]
    assert httpx.get(target.server.api_url + "/health", timeout=10).status_code == 200  # still serving


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)


def _field_strategy(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects mixing the route's real field names with random ones and random values (NUL, huge ints, …)."""
    keys = st.sampled_from(names) | st.text(max_size=12) if names else st.text(max_size=12)
    return st.dictionaries(
        keys, JSON_VALUES | st.sampled_from(["\x00", "\r\n", 2**63, -(2**63) - 1, 1e308]), max_size=8
    )


FIELDS = ["from", "to", "cc", "bcc", "subject", "html", "text", "headers", "attachments", "scheduled_at", "name",
          "url", "events", "events_mode", "auth_type", "project_id", "folder_id", "slug", "domain", "metadata",
          "tag", "reply_to", "options", "template_slug", "substitution_data", "purpose", "json", "emails",
          "contacts", "list_id", "list_ids", "properties", "topics", "update_existing", "contact_ids", "topic_ids",
          "conditions", "type", "fallback_value", "default_subscription", "visibility", "email", "double_opt_in",
          "description"]  # fmt: skip


def test_random_json_bodies_on_every_write_route_never_cause_a_server_error(target: SecurityTarget) -> None:
    paths = httpx.get(target.server.base_url + "/schema/openapi.json").json()["paths"]
    writes = [
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in ("post", "put", "patch") and "{" not in path
    ]
    assert ("POST", "/api/emails") in writes
    failures: list[str] = []
    with httpx.Client(timeout=30) as http:
        for method, path in writes:
            try:
                _fuzz_route(http, target, method, path, JSON_BODIES, BODY_EXAMPLES)
            except AssertionError as exc:
                failures.append(str(exc)[:1000])
    assert not failures, "\n".join(failures)


JSON_BODIES = (_field_strategy(FIELDS) | JSON_VALUES).map(lambda body: json.dumps(body).encode())


def _fuzz_route(
    http: httpx.Client,
    target: SecurityTarget,
    method: str,
    path: str,
    bodies: st.SearchStrategy[bytes],
    examples: int,
) -> None:
    """``examples`` request bodies from ``bodies`` on one route; each must get an answer below 500."""

    @given(body=bodies)
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same examples on every run, so CI is stable and a failure reproduces
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(body: bytes) -> None:
        response = http.request(
            method,
            target.server.base_url + path,
            content=body,
            headers={**bearer(target.a.full_key), "Content-Type": "application/json"},
        )
        assert response.status_code < 500, f"{method} {path} {body[:300]!r} -> {response.text[:300]}"

    fuzz()


HUGE = 14640701305840708111872913571840


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/emails", {"project_id": HUGE}, "project_id"),
        ("POST", "/emails", {"project_id": -(2**46)}, "project_id"),
        ("POST", "/emails", {"template_slug": "x", "template_version": HUGE}, "template_version"),
        ("POST", "/templates", {"name": "big ids", "html": "x", "project_id": HUGE}, "project_id"),
        ("POST", "/templates", {"name": "big ids", "html": "x", "folder_id": -(2**46)}, "folder_id"),
        ("GET", "/templates?project_id=99999999999999999999", None, "project_id"),
        ("GET", "/projects?page=99999999999999999999", None, "page"),
    ],
    ids=["send project", "send negative project", "send version", "template project", "template folder",
         "query project", "query page"],
)  # fmt: skip
def test_ids_beyond_32_bits_get_422_naming_the_field(
    target: SecurityTarget, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    if path == "/emails":
        body = {
            "from": f"a@{target.a.domain}",
            "to": ["victim@example.test"],
            "subject": "x",
            "text": "x",
            **(body or {}),
        }
    response = httpx.request(
        method, target.server.api_url + path, json=body, headers=bearer(target.a.full_key), timeout=30
    )
    assert response.status_code == 422, response.text
    assert field in response.json()["errors"]
