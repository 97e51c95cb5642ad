"""Audience routes across two teams, and bad input on every audience route.

Path ids of another team are covered route by route in tests/security/test_cross_tenant.py; here team A names
team B's ids where the routes take them in bodies and query strings, and gets exactly what a missing id gets.
Bad input is a 4xx naming the field (or the row), never a 5xx, and leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, func, select

from postroom.models import audience_lists, contacts, segments, topics
from tests.conftest import Backend, Server
from tests.e2e.test_audience import Team


@pytest.fixture
def a(backend: Backend, server: Server) -> Team:
    return Team(backend, server)


@pytest.fixture
def b(backend: Backend, server: Server) -> dict[str, str]:
    """Team B's list, topic, contact (on the list, subscribed) and segment."""
    owner = Team(backend, server)
    list_id = owner.audience.lists.create(name="B list").id
    topic_id = owner.audience.topics.create(name="B topic").id
    contact = owner.audience.contacts.create(email="b-only@example.test", list_id=list_id)
    owner.audience.contacts.subscribe_to_topic(contact_id=contact.id, topic_id=topic_id)
    conditions = {"groups": [{"conditions": [{"field": "email", "operator": "contains", "value": "b-only"}]}]}
    segment_id = owner.audience.segments.create(name="B seg", conditions=conditions).id
    return {"list": list_id, "topic": topic_id, "contact": contact.id, "segment": segment_id, "team": str(owner.id)}


def _same_as_missing(team: Team, method: str, path: str, foreign: Any, missing: Any, **kwargs: Any) -> httpx.Response:
    """The answer for B's id equals the answer for an id that never existed (status and body)."""

    def call(value: Any) -> httpx.Response:
        params = kwargs.get("params")
        return team.http.request(
            method,
            path,
            json=kwargs["body"](value) if "body" in kwargs else None,
            params=params(value) if params else None,
        )

    theirs, nobodys = call(foreign), call(missing)
    assert (theirs.status_code, theirs.json()) == (nobodys.status_code, nobodys.json()), (method, path)
    assert theirs.status_code in (404, 422), theirs.text
    return theirs


def test_team_b_ids_in_bodies_and_queries_are_as_missing_to_team_a(
    a: Team, b: dict[str, str], backend: Backend
) -> None:
    mine = a.audience.contacts.create(email="a-only@example.test")
    my_list = a.audience.lists.create(name="A list")
    my_topic = a.audience.topics.create(name="A topic")
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("DELETE", "/audience/lists/bulk", {"body": lambda v: {"list_ids": [v]}}),
        ("POST", "/audience/contacts/lists/bulk", {"body": lambda v: {"contact_ids": [mine.id], "list_ids": [v]}}),
        ("POST", "/audience/contacts/lists/bulk", {"body": lambda v: {"contact_ids": [v], "list_ids": [my_list.id]}}),
        ("DELETE", "/audience/contacts/lists/bulk", {"body": lambda v: {"contact_ids": [v], "list_ids": [my_list.id]}}),
        ("POST", "/audience/contacts/topics/bulk", {"body": lambda v: {"contact_ids": [mine.id], "topic_ids": [v]}}),
        ("DELETE", "/audience/contacts/topics/bulk", {"body": lambda v: {"contact_ids": [v], "topic_ids": [my_topic.id]}}),
        ("POST", "/audience/contacts", {"body": lambda v: {"email": "new@example.test", "list_id": v}}),
        ("POST", "/audience/contacts/bulk", {"body": lambda v: {"emails": ["n@example.test"], "list_ids": [v]}}),
        ("POST", "/audience/contacts/bulk", {"body": lambda v: {"emails": ["n@example.test"], "topics": [{"id": v}]}}),
        ("GET", "/audience/contacts", {"params": lambda v: {"list_id": v}}),
        ("GET", "/audience/contacts", {"params": lambda v: {"segment_id": v}}),
        ("GET", "/audience/segments", {"params": lambda v: {"list_id": v}}),
        ("POST", "/audience/segments", {"body": lambda v: {"name": "x", "list_id": v, "conditions": {"groups": [
            {"conditions": [{"field": "email", "operator": "contains", "value": "@"}]}]}}}),
    ]  # fmt: skip
    kinds = ["list", "list", "contact", "contact", "topic", "contact", "list", "list", "topic", "list", "segment",
             "list", "list"]  # fmt: skip
    for (method, path, kwargs), kind in zip(cases, kinds, strict=True):
        _same_as_missing(a, method, path, b[kind], f"{kind}_never_existed", **kwargs)

    raw = a.http.post(
        "/audience/contacts/bulk",
        json={
            "contacts": [
                {"email": "r@example.test", "list_ids": [b["list"]]},
                {"email": "s@example.test", "topics": [{"id": b["topic"]}]},
            ]
        },  # fmt: skip
    ).json()["data"]
    assert [(e["index"], e["error_code"]) for e in raw["errors"]] == [(0, "unknown_list"), (1, "unknown_topic")]
    assert raw["created"] == 0

    def b_state(conn: Connection) -> tuple[int, int, int, int]:
        team = int(b["team"])
        return (
            conn.execute(select(func.count()).select_from(contacts).where(contacts.c.team_id == team)).scalar_one(),
            conn.execute(
                select(func.count()).select_from(audience_lists).where(audience_lists.c.team_id == team)
            ).scalar_one(),
            conn.execute(select(func.count()).select_from(topics).where(topics.c.team_id == team)).scalar_one(),
            conn.execute(select(func.count()).select_from(segments).where(segments.c.team_id == team)).scalar_one(),
        )

    assert backend.read(b_state) == (1, 1, 1, 1)
    owner_view = a.http.get("/audience/contacts").json()["data"]["contacts"]
    assert [c["email"] for c in owner_view] == ["a-only@example.test"]


LONG = "x" * 256
BAD_INPUT: list[tuple[str, str, Any, str]] = [
    ("POST", "/audience/lists", {"name": LONG}, "name"),
    ("POST", "/audience/lists", {"name": 7}, "name"),
    ("POST", "/audience/lists", {}, "name"),
    ("POST", "/audience/lists", {"name": "   "}, "name"),
    ("POST", "/audience/lists", "not an object", "body"),
    ("DELETE", "/audience/lists/bulk", {"list_ids": []}, "list_ids"),
    ("DELETE", "/audience/lists/bulk", {"list_ids": [f"l{i}" for i in range(51)]}, "list_ids"),
    ("POST", "/audience/contacts", {"email": "nope"}, "email"),
    ("POST", "/audience/contacts", {"email": f"{'a' * 250}@example.com"}, "email"),
    ("POST", "/audience/contacts", {"email": "a@example.com", "properties": {"unknown": "x"}}, "properties.unknown"),
    ("POST", "/audience/contacts", {"email": "a@example.com", "properties": []}, "properties"),
    ("POST", "/audience/contacts", {"email": ["a@example.com"]}, "email"),
    ("POST", "/audience/contacts/bulk", {"emails": [f"u{i}@example.com" for i in range(1001)]}, "emails"),
    ("POST", "/audience/contacts/bulk", {"contacts": [{"email": "a@example.com"}] * 1001}, "contacts"),
    ("POST", "/audience/contacts/bulk", {}, "emails"),
    ("POST", "/audience/contacts/bulk", {"emails": ["a@x.io"], "update_existing": "yes"}, "update_existing"),
    ("POST", "/audience/contacts/bulk", {"emails": ["a@x.io"], "properties": {"nope": "1"}}, "properties.nope"),
    ("POST", "/audience/contacts/lists/bulk", {"contact_ids": ["c"] * 1001, "list_ids": ["l"]}, "contact_ids"),
    ("POST", "/audience/contacts/lists/bulk", {"contact_ids": ["c"]}, "list_ids"),
    ("POST", "/audience/contacts/topics/bulk", {"contact_ids": ["c"], "topic_ids": [1]}, "topic_ids.0"),
    ("POST", "/audience/topics", {"name": "t", "default_subscription": "always"}, "default_subscription"),
    ("POST", "/audience/topics", {"name": "t", "visibility": "secret"}, "visibility"),
    ("POST", "/audience/topics", {"name": "t", "description": "d" * 1001}, "description"),
    ("POST", "/audience/properties", {"name": "1abc", "type": "string"}, "name"),
    ("POST", "/audience/properties", {"name": "ok", "type": "string", "fallback_value": LONG}, "fallback_value"),
    ("POST", "/audience/properties", {"name": "email", "type": "string"}, "name"),
    ("POST", "/audience/segments", {"name": "s"}, "conditions"),
    ("POST", "/audience/segments", {"name": "s", "conditions": {"groups": []}}, "conditions.groups"),
    (
        "POST",
        "/audience/segments",
        {"name": "s", "conditions": {"groups": [{"conditions": [{"field": "email"}]}]}},
        "conditions.groups.0.conditions.0.operator",
    ),  # fmt: skip
    ("GET", "/audience/contacts?search=" + LONG, None, "search"),
    ("GET", "/audience/contacts?page=0", None, "page"),
    ("GET", "/audience/lists?per_page=abc", None, "per_page"),
    ("GET", "/audience/topics?per_page=101", None, "per_page"),
    ("GET", "/audience/properties?page=x", None, "page"),
    ("GET", "/audience/segments?per_page=0", None, "per_page"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), BAD_INPUT, ids=[f"{m} {p[:40]} {f}" for m, p, _, f in BAD_INPUT]
)
def test_bad_input_gets_422_naming_the_field_and_writes_nothing(
    a: Team, backend: Backend, method: str, path: str, body: Any, field: str
) -> None:
    response = a.http.request(method, path, json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert (payload["message"], payload["error_code"]) == ("Validation failed.", "validation_error")
    assert field in payload["errors"], payload

    def written(conn: Connection) -> int:
        return sum(
            conn.execute(select(func.count()).select_from(table).where(table.c.team_id == a.id)).scalar_one()
            for table in (contacts, audience_lists, topics, segments)
        )

    assert backend.read(written) == 0


def test_bad_input_on_object_routes_names_the_field(a: Team) -> None:
    contact = a.audience.contacts.create(email="c@example.test")
    listed = a.audience.lists.create(name="L")
    topic = a.audience.topics.create(name="T")
    prop = a.audience.properties.create(name="n", type="number")
    conditions = {"groups": [{"conditions": [{"field": "email", "operator": "contains", "value": "@"}]}]}
    segment = a.audience.segments.create(name="S", conditions=conditions)
    cases = [
        (f"/audience/lists/{listed.id}", {"name": LONG}, "name"),
        (f"/audience/contacts/{contact.id}", {"status": "bounced"}, "status"),
        (f"/audience/contacts/{contact.id}", {"email": "bad"}, "email"),
        (f"/audience/contacts/{contact.id}", {"properties": {"n": "NaN-ish"}}, "properties.n"),
        (f"/audience/topics/{topic.id}", {"visibility": "hidden"}, "visibility"),
        (f"/audience/properties/{prop.id}", {"fallback_value": "abc"}, "fallback_value"),
        (f"/audience/segments/{segment.id}", {"conditions": {"groups": [{"conditions": [
            {"field": "n", "operator": "before", "value": "1"}]}]}}, "conditions.groups.0.conditions.0.operator"),
    ]  # fmt: skip
    for path, body, field in cases:
        response = a.http.patch(path, json=body)
        assert response.status_code == 422 and field in response.json()["errors"], (path, response.text)
    assert a.audience.contacts.get(contact.id).status == "subscribed"
    assert a.audience.segments.get(segment.id).condition_groups[0]["conditions"][0]["operator"] == "contains"
    taken = a.audience.contacts.create(email="d@example.test")
    clash = a.http.patch(f"/audience/contacts/{taken.id}", json={"email": "C@example.test"})
    assert (clash.status_code, clash.json()["error_code"]) == (409, "resource_already_exists")


def test_nul_characters_anywhere_are_refused_not_stored(a: Team) -> None:
    listed = a.audience.lists.create(name="L")
    body = a.http.post("/audience/contacts/bulk", json={"contacts": [{"email": "x@example.test",
                       "properties": {"a\x00": "1"}}]})  # fmt: skip
    assert (body.status_code, list(body.json()["errors"])) == (422, ["contacts.0.properties.a\x00"])
    assert a.http.post("/audience/topics", json={"name": "t\x00"}).json()["errors"] == {
        "name": ["Must not contain NUL characters."]
    }
    assert a.http.get("/audience/contacts", params={"search": "a\x00"}).status_code == 422
    assert a.http.get(f"/audience/lists/{listed.id}%00").status_code == 404
    assert a.http.get("/audience/contacts", params={"list_id": "l\x00"}).status_code == 404
    assert a.http.delete("/audience/contacts/c%00/lists/l%00").status_code == 404
