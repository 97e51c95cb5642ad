"""Cross-tenant matrix: team A's Full Access key never sees or changes team B's
objects.

Team B creates one object of every kind the API has (an email, a scheduled email, a suppression, its domain, and
a template and a webhook when those routes exist, found by reading the live OpenAPI document). Then, for every
route with a path parameter and every method on it, team A's key asks for B's object: the answer is always 404,
and B reads every object back unchanged afterwards. Every list route, called by A (also with B's project id
where a route takes one), never mentions any of B's objects. A route whose path parameter the matrix does not
know fails the test, so a new route cannot slip past it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest

from postroom.core.clock import iso_resource, utcnow
from postroom.emails import service as emails_service
from tests.conftest import bearer
from tests.security.conftest import SecurityTarget

B_VICTIM = "b-customer@example.test"
B_SUPPRESSED = "b-suppressed@example.test"
WRITE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/api/templates/{slug}"): {"name": "taken over", "html": "<p>A was here</p>"},
    ("PUT", "/api/webhooks/{webhook_id}"): {"name": "taken over"},
    ("PATCH", "/api/webhooks/{webhook_id}"): {"name": "taken over"},
}
"""Valid bodies for write routes, so a refusal can only be the ownership check, never validation."""


def _routes(http: httpx.Client, target: SecurityTarget) -> list[tuple[str, str]]:
    paths = http.get(target.server.base_url + "/schema/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item if method != "parameters"]


def _create_b_objects(http: httpx.Client, target: SecurityTarget, routes: list[tuple[str, str]]) -> dict[str, Any]:
    """B's objects, by path parameter name, created through the API where it can create them."""
    api, key, b = target.server.api_url, target.b.full_key, target.b
    send = {"from": f"news@{b.domain}", "to": [B_VICTIM], "subject": "B's mail", "text": "for B only"}
    sent = http.post(api + "/emails", json=send, headers=bearer(key))
    assert sent.status_code == 200, sent.text
    later = iso_resource(utcnow() + timedelta(hours=2))
    scheduled = http.post(api + "/emails/scheduled", json={**send, "scheduled_at": later}, headers=bearer(key))
    assert scheduled.status_code in (200, 201), scheduled.text
    target.backend.write(
        lambda conn: emails_service.suppress(
            conn, team_id=b.team_id, email=B_SUPPRESSED, reason="bounce", source="test", now=utcnow()
        )
    )
    objects: dict[str, Any] = {
        "request_id": sent.json()["data"]["request_id"],
        "scheduled_request_id": scheduled.json()["data"]["request_id"],
        "email": B_SUPPRESSED,
        "domain": b.domain,
    }
    if ("POST", "/api/templates") in routes:
        created = http.post(
            api + "/templates", json={"name": "B secret template", "html": "<p>{{name}}</p>"}, headers=bearer(key)
        )
        assert created.status_code in (200, 201), created.text
        objects["slug"] = created.json()["data"]["slug"]
    if ("POST", "/api/webhooks") in routes:
        created = http.post(
            api + "/webhooks",
            json={
                "name": "B hook",
                "url": f"http://127.0.0.1:9/b-hook-{secrets.token_hex(4)}",
                "auth_type": "none",
                "events_mode": "all",
            },
            headers=bearer(key),
        )
        assert created.status_code in (200, 201), created.text
        objects["webhook_id"] = created.json()["data"]["id"]
        objects["delivery_id"] = "whd_not_a_delivery_of_a"  # B's endpoint has no delivery yet; A still gets 404
    if ("POST", "/api/audience/lists") in routes:
        objects.update(_create_b_audience(http, api, key))
    return objects


def _create_b_audience(http: httpx.Client, api: str, key: str) -> dict[str, str]:
    """B's list, property, topic, a contact on both, and a segment of that list."""

    def create(path: str, body: dict[str, Any]) -> str:
        response = http.post(api + path, json=body, headers=bearer(key))
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"])

    token = secrets.token_hex(4)
    prop = f"b_secret_{token}"
    list_id = create("/audience/lists", {"name": f"B secret list {token}"})
    property_id = create("/audience/properties", {"name": prop, "type": "string"})
    topic_id = create("/audience/topics", {"name": "B secret topic"})
    email = f"b-contact-{token}@example.test"
    contact_id = create("/audience/contacts", {"email": email, "list_id": list_id, "properties": {prop: "x"}})
    assert http.post(f"{api}/audience/contacts/{contact_id}/topics/{topic_id}", headers=bearer(key)).status_code == 201
    conditions = {"groups": [{"conditions": [{"field": prop, "operator": "equals", "value": "x"}]}]}
    segment_id = create(
        "/audience/segments", {"name": "B secret segment", "conditions": conditions, "list_id": list_id}
    )
    return {
        "contact_email": email,
        "list_id": list_id,
        "property_id": property_id,
        "topic_id": topic_id,
        "contact_id": contact_id,
        "segment_id": segment_id,
    }


def _fill(path: str, objects: dict[str, Any]) -> str:
    filled = path
    while "{" in filled:
        name = filled[filled.index("{") + 1 : filled.index("}")]
        key = "scheduled_request_id" if name == "request_id" and "/scheduled/" in path else name
        if key not in objects:
            pytest.fail(f"{path}: the cross-tenant matrix has no team-B object for {{{name}}}; add one")
        filled = filled.replace("{" + name + "}", str(objects[key]), 1)
    return filled


def _b_project(http: httpx.Client, target: SecurityTarget) -> int:
    projects = http.get(target.server.api_url + "/projects", headers=bearer(target.b.full_key)).json()
    return int(projects["data"]["projects"][0]["id"])


def test_team_a_gets_404_for_every_team_b_object_on_every_route_and_changes_nothing(target: SecurityTarget) -> None:
    with httpx.Client(timeout=30) as http:
        routes = _routes(http, target)
        objects = _create_b_objects(http, target, routes)
        object_routes = sorted((r for r in routes if "{" in r[1]), key=lambda r: r[0] == "DELETE")  # deletes last
        assert object_routes, "no route with a path parameter?"
        leaks = []
        for method, path in object_routes:
            url = target.server.base_url + _fill(path, objects)
            body = WRITE_BODIES.get((method, path), {} if method in ("POST", "PUT", "PATCH") else None)
            response = http.request(method, url, json=body, headers=bearer(target.a.full_key))
            if response.status_code != 404:
                leaks.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        project_b = _b_project(http, target)
        tampered = [p for p in ("/api/templates", "/api/folders") if ("GET", p) in routes]
        if ("GET", "/api/templates/{slug}") in routes and "slug" in objects:
            tampered.append(f"/api/templates/{objects['slug']}")
        for path in tampered:  # A names B's project explicitly
            response = http.get(
                target.server.base_url + path, params={"project_id": project_b}, headers=bearer(target.a.full_key)
            )
            if response.status_code not in (404, 422) or str(objects.get("slug", "\0")) in response.text:
                leaks.append(f"GET {path}?project_id=<B's>: {response.status_code} {response.text[:200]}")
        print(f"\ncross-tenant[{target.backend.name}]: object routes={len(object_routes)} leaks={len(leaks)}")
        assert not leaks, "\n".join(leaks)

        # Nothing A did reached B's objects: B reads each one back.
        for method, path in routes:
            if method == "GET" and "{" in path and not path.endswith(("/merge-tags", "/deliveries")):
                url = target.server.base_url + _fill(path, objects)
                if path == "/api/suppressions/{email}":
                    continue
                assert http.get(url, headers=bearer(target.b.full_key)).status_code == 200, (path, url)
        suppressed = http.get(target.server.api_url + "/suppressions", headers=bearer(target.b.full_key)).text
        assert B_SUPPRESSED in suppressed
        domain = http.get(target.server.api_url + f"/domains/{target.b.domain}", headers=bearer(target.b.full_key))
        assert domain.status_code == 200


def test_team_b_objects_never_appear_in_team_a_lists(target: SecurityTarget) -> None:
    with httpx.Client(timeout=30) as http:
        routes = _routes(http, target)
        objects = _create_b_objects(http, target, routes)
        secrets = {str(v) for k, v in objects.items() if k != "delivery_id"} | {B_VICTIM, "B secret template"}
        lists = [path for method, path in routes if method == "GET" and "{" not in path and "/health" not in path]
        assert len(lists) >= 5
        for path in lists:
            response = http.get(target.server.base_url + path, headers=bearer(target.a.full_key))
            assert response.status_code in (200, 422), (path, response.status_code, response.text[:200])
            leaked = [s for s in secrets if s in response.text]
            assert not leaked, f"GET {path} shows team B's {leaked}"


def test_team_a_registering_team_b_domain_learns_nothing_and_cannot_send_from_it(target: SecurityTarget) -> None:
    """A name is unique per team: A's registration of B's domain is an ordinary pending domain of A's (no 409 that
    would say someone else has it), which A cannot verify with B's records or send from, and B keeps sending."""
    api, a, b = target.server.api_url, target.a, target.b
    with httpx.Client(timeout=30) as http:
        created = http.post(api + "/domains", json={"domain": b.domain}, headers=bearer(a.full_key))
        try:
            assert created.status_code == 201, created.text
            assert created.json()["data"]["status"] == "pending"
            verified = http.post(api + f"/domains/{b.domain}/verify", headers=bearer(a.full_key))
            assert verified.status_code == 200, verified.text
            assert verified.json()["data"]["status"] == "pending"
            send = {"from": f"news@{b.domain}", "to": [B_VICTIM], "subject": "from A", "text": "x"}
            refused = http.post(api + "/emails", json=send, headers=bearer(a.full_key))
            assert (refused.status_code, refused.json()["error_code"]) == (400, "unconfigured_domain")
            assert http.post(api + "/emails", json=send, headers=bearer(b.full_key)).status_code == 200
            b_view = http.get(api + f"/domains/{b.domain}", headers=bearer(b.full_key)).json()["data"]
            assert (b_view["status"], b_view["can_send"]) == ("approved", True)
        finally:
            http.delete(api + f"/domains/{b.domain}", headers=bearer(a.full_key))
        assert http.get(api + f"/domains/{b.domain}", headers=bearer(a.full_key)).status_code == 404
