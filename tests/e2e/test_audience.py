"""The audience half of the API through the official SDK, unchanged, against a live Postroom on both databases:
lists, contacts (filters, pagination), properties, topics, bulk routes with their precedence rules, segments, and
contact status following the suppression list. Each test works in a team of its own, so counts are exact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lettr import BulkContactRow, Lettr, TopicSubscription
from lettr._exceptions import ConflictError, ContactAlreadyExistsError, NotFoundError, ValidationError
from sqlalchemy import Connection, select

from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.emails import service as emails_service
from postroom.models import audit_log
from tests.conftest import Backend, Server, bearer
from tests.system.cluster import new_team


class Team:
    """A fresh team with a Full Access key, its SDK client and a raw HTTP client."""

    def __init__(self, backend: Backend, server: Server) -> None:
        self.id = new_team(backend)
        self.key = backend.create_key(team_id=self.id).key
        self.client = Lettr(self.key, base_url=server.api_url)
        self.audience = self.client.audience
        self.http = httpx.Client(base_url=server.api_url, headers=bearer(self.key), timeout=30)


@pytest.fixture
def team(backend: Backend, server: Server) -> Team:
    return Team(backend, server)


def test_lists_create_get_update_page_and_delete(team: Team) -> None:
    lists = team.audience.lists
    created = [lists.create(name=f"List {i:02d}") for i in range(5)]
    assert created[0].contacts_count == 0 and created[0].id
    assert lists.get(created[1].id).name == "List 01"
    page = lists.list(per_page=2, page=2)
    assert (page.total, page.per_page, page.current_page, page.last_page) == (5, 2, 2, 3)
    assert [item.name for item in page.lists] == ["List 02", "List 03"]
    assert lists.update(created[0].id, name="Renamed").name == "Renamed"
    assert lists.update(created[0].id).name == "Renamed"  # an empty body changes nothing
    with pytest.raises(ConflictError) as conflict:
        lists.create(name="List 01")
    assert conflict.value.error_code == "resource_already_exists"
    lists.delete(created[4].id)
    with pytest.raises(NotFoundError) as missing:
        lists.get(created[4].id)
    assert missing.value.message == "List not found."
    assert lists.bulk_delete(list_ids=[created[2].id, created[3].id]).deleted == 2
    assert lists.list().total == 2


def test_contacts_create_get_update_delete(team: Team) -> None:
    contacts = team.audience.contacts
    props = team.audience.properties
    props.create(name="first_name", type="string")
    props.create(name="age", type="number")
    vip = team.audience.lists.create(name="VIP")
    jane = contacts.create(email="  Jane@Example.com ", list_id=vip.id, properties={"first_name": "Jane", "age": "41"})
    assert (jane.email, jane.status) == ("jane@example.com", "subscribed")
    assert jane.properties == {"first_name": "Jane", "age": "41"}
    assert [(ref.id, ref.name) for ref in jane.lists] == [(vip.id, "VIP")]
    assert team.audience.lists.get(vip.id).contacts_count == 1
    with pytest.raises(ContactAlreadyExistsError) as exists:
        contacts.create(email="jane@example.com")
    assert exists.value.message == "A contact with the email jane@example.com already exists."
    updated = contacts.update(jane.id, status="unsubscribed", properties={"age": None, "first_name": "Janet"})
    assert (updated.status, updated.properties) == ("unsubscribed", {"first_name": "Janet"})
    assert contacts.update(jane.id).properties == {"first_name": "Janet"}
    with pytest.raises(ValidationError) as bad:
        contacts.update(jane.id, properties={"age": "forty"})
    assert bad.value.errors == {"properties.age": ["The property 'age' must be a number."]}
    with pytest.raises(ValidationError) as unknown:
        contacts.create(email="x@example.com", properties={"plan": "pro"})
    assert list(unknown.value.errors) == ["properties.plan"]
    assert contacts.list().total == 1  # nothing half-written
    contacts.delete(jane.id)
    with pytest.raises(NotFoundError) as gone:
        contacts.get(jane.id)
    assert gone.value.message == "Contact not found."
    assert team.audience.lists.get(vip.id).contacts_count == 0


def test_contact_listing_filters_and_pages(team: Team) -> None:
    contacts = team.audience.contacts
    team.audience.properties.create(name="first_name", type="string")
    vip = team.audience.lists.create(name="VIP")
    made = [contacts.create(email=f"user{i:02d}@example.com") for i in range(25)]
    contacts.create(email="zed@other.test", properties={"first_name": "Zebedee"})
    for contact in made[:3]:
        contacts.add_to_list(contact_id=contact.id, list_id=vip.id)
    contacts.update(made[5].id, status="unsubscribed")

    first = contacts.list()
    assert (first.total, first.per_page, first.last_page, len(first.contacts)) == (26, 20, 2, 20)
    assert first.contacts[0].email == "zed@other.test"  # newest first
    second = contacts.list(page=2)
    assert len(second.contacts) == 6
    assert {c.id for c in first.contacts}.isdisjoint(c.id for c in second.contacts)
    assert [c.email for c in contacts.list(search="user0", per_page=100).contacts] == [
        f"user{i:02d}@example.com" for i in range(9, -1, -1)
    ]
    assert [c.email for c in contacts.list(search="ZEBED").contacts] == ["zed@other.test"]
    assert [c.email for c in contacts.list(status="unsubscribed").contacts] == ["user05@example.com"]
    in_vip = contacts.list(list_id=vip.id)
    assert (in_vip.total, {c.email for c in in_vip.contacts}) == (3, {f"user0{i}@example.com" for i in range(3)})
    assert all(c.lists[0].id == vip.id for c in in_vip.contacts)
    with pytest.raises(ValidationError) as bad:
        contacts.list(per_page=101)
    assert "per_page" in bad.value.errors
    with pytest.raises(ValidationError) as bad_status:
        contacts.list(status="asleep")
    assert "status" in bad_status.value.errors
    with pytest.raises(NotFoundError):
        contacts.list(list_id="lst_missing")


def test_memberships_answer_201_then_200_and_deletes_are_idempotent(team: Team) -> None:
    contact = team.audience.contacts.create(email="m@example.com")
    vip = team.audience.lists.create(name="VIP")
    news = team.audience.topics.create(name="News")
    path = f"/audience/contacts/{contact.id}"
    first = team.http.post(f"{path}/lists/{vip.id}")
    assert (first.status_code, first.json()) == (201, {"message": "Contact attached to list."})
    assert team.http.post(f"{path}/lists/{vip.id}").status_code == 200
    assert team.http.post(f"{path}/topics/{news.id}").status_code == 201
    assert team.http.post(f"{path}/topics/{news.id}").json() == {"message": "Contact subscribed to topic."}
    assert team.audience.topics.get(news.id).contacts_count == 1
    team.audience.contacts.remove_from_list(contact_id=contact.id, list_id=vip.id)
    team.audience.contacts.remove_from_list(contact_id=contact.id, list_id=vip.id)
    team.audience.contacts.unsubscribe_from_topic(contact_id=contact.id, topic_id=news.id)
    team.audience.contacts.unsubscribe_from_topic(contact_id=contact.id, topic_id=news.id)
    again = team.audience.contacts.get(contact.id)
    assert (again.lists, again.topics) == ([], [])
    missing = team.http.post(f"{path}/lists/lst_nope")
    assert missing.json() == {"message": "Contact or list not found.", "error_code": "not_found"}
    assert team.http.delete(f"/audience/contacts/ctc_nope/topics/{news.id}").json()["message"] == (
        "Contact or topic not found."
    )


def test_properties_typed_with_fallbacks(team: Team) -> None:
    props = team.audience.properties
    plan = props.create(name="plan", type="string", fallback_value="free")
    assert (plan.type, plan.fallback_value) == ("string", "free")
    for kind, good, bad in [("number", "3.5", "x"), ("boolean", "true", "yes"), ("date", "2026-12-02", "12/02"),
                            ("json", '{"a": 1}', "{nope")]:  # fmt: skip
        created = props.create(name=f"p_{kind}", type=kind)
        contact = team.audience.contacts.create(email=f"{kind}@example.com", properties={f"p_{kind}": good})
        assert contact.properties == {f"p_{kind}": good}
        with pytest.raises(ValidationError) as invalid:
            team.audience.contacts.update(contact.id, properties={f"p_{kind}": bad})
        assert list(invalid.value.errors) == [f"properties.p_{kind}"]
        assert props.get(created.id).type == kind
    with pytest.raises(ConflictError) as dup:
        props.create(name="plan", type="number")
    assert dup.value.message == "A property with this name already exists."
    with pytest.raises(ValidationError) as bad_name:
        props.create(name="Plan", type="string")
    assert "name" in bad_name.value.errors
    with pytest.raises(ValidationError) as bad_type:
        props.create(name="score", type="integer")
    assert "type" in bad_type.value.errors
    with pytest.raises(ValidationError) as bad_fallback:
        props.create(name="score", type="number", fallback_value="high")
    assert "fallback_value" in bad_fallback.value.errors
    assert props.update(plan.id, fallback_value="basic").fallback_value == "basic"
    assert props.update(plan.id).fallback_value == "basic"
    assert props.update(plan.id, fallback_value=None).fallback_value is None
    page = props.list(per_page=2)
    assert (page.total, page.last_page) == (5, 3)
    number = next(p for p in props.list(per_page=100).properties if p.name == "p_number")
    props.delete(number.id)
    assert team.audience.contacts.list(search="number@").contacts[0].properties == {}


def test_topics_defaults_visibility_and_opt_out_auto_subscription(team: Team) -> None:
    topics = team.audience.topics
    news = topics.create(name="News", description="Monthly")
    assert (news.default_subscription, news.visibility, news.description) == ("opt_in", "private", "Monthly")
    promos = topics.create(name="Promos", default_subscription="opt_out", visibility="public")
    contact = team.audience.contacts.create(email="auto@example.com")
    assert [t.id for t in contact.topics] == [promos.id]
    assert topics.get(promos.id).contacts_count == 1
    changed = topics.update(news.id, description=None, visibility="public", name="Newsletter")
    assert (changed.description, changed.visibility, changed.name) == (None, "public", "Newsletter")
    assert topics.update(news.id).name == "Newsletter"
    immutable = team.http.patch(f"/audience/topics/{news.id}", json={"default_subscription": "opt_out"})
    assert immutable.status_code == 422 and "default_subscription" in immutable.json()["errors"]
    assert topics.list().total == 2
    topics.delete(news.id)
    with pytest.raises(NotFoundError) as gone:
        topics.get(news.id)
    assert gone.value.message == "Topic not found."


def test_bulk_create_emails_normalises_and_reports_bad_rows(team: Team) -> None:
    vip = team.audience.lists.create(name="VIP")
    team.audience.properties.create(name="plan", type="string")
    team.audience.contacts.create(email="old@example.com")
    result = team.audience.contacts.bulk_create(
        emails=[" A@Example.com", "a@example.com", "not-an-address", "OLD@example.com", "b@example.com", ""],
        list_id=vip.id,
        properties={"plan": "pro"},
    )
    assert (result.created, result.already_existed, result.updated, result.error_count) == (2, 1, 0, 2)
    assert [(e.index, e.email, e.error_code) for e in result.errors] == [
        (2, "not-an-address", "invalid_email"),
        (5, None, "missing_email"),
    ]
    assert [(c.email, c.created) for c in result.contacts] == [
        ("a@example.com", True), ("old@example.com", False), ("b@example.com", True)
    ]  # fmt: skip
    assert team.audience.lists.get(vip.id).contacts_count == 3  # existing contacts are attached too
    old = team.audience.contacts.get(result.contacts[1].id)
    assert old.properties == {}  # without update_existing an existing contact keeps its properties


def test_bulk_create_rows_precedence_and_update_existing(team: Team) -> None:
    audience = team.audience
    audience.properties.create(name="plan", type="string")
    audience.properties.create(name="age", type="number")
    everyone, extra = audience.lists.create(name="Everyone"), audience.lists.create(name="Extra")
    news = audience.topics.create(name="News")
    promos = audience.topics.create(name="Promos", default_subscription="opt_out")
    existing = audience.contacts.create(email="dan@example.com", properties={"age": "30"})
    assert [t.id for t in existing.topics] == [promos.id]

    result = audience.contacts.bulk_create(
        contacts=[
            BulkContactRow(email="cara@example.com", properties={"plan": "pro"}, list_ids=[extra.id]),
            BulkContactRow(email="eve@example.com", topics=[TopicSubscription.opt_out(news.id)]),
            BulkContactRow(email="fay@example.com", topics=[TopicSubscription.opt_out(promos.id)]),
            BulkContactRow(
                email="dan@example.com", properties={"plan": "team"}, topics=[TopicSubscription.opt_out(promos.id)]
            ),  # fmt: skip
            BulkContactRow(email="gil@example.com", properties={"colour": "red"}),
            BulkContactRow(email="hal@example.com", properties={"age": "old"}),
            BulkContactRow(email="ivy@example.com", list_ids=["lst_unknown"]),
            BulkContactRow(email="jo@example.com", topics=[TopicSubscription.opt_in("top_unknown")]),
        ],
        list_ids=[everyone.id],
        properties={"plan": "free"},
        topics=[TopicSubscription.opt_in(news.id)],
        update_existing=True,
    )
    assert (result.created, result.already_existed, result.updated, result.error_count) == (3, 0, 1, 4)
    assert [(e.index, e.error_code) for e in result.errors] == [
        (4, "unknown_property_key"), (5, "invalid_property_value"), (6, "unknown_list"), (7, "unknown_topic")
    ]  # fmt: skip
    by_email = {ref.email: audience.contacts.get(ref.id) for ref in result.contacts}
    assert list(by_email) == ["cara@example.com", "eve@example.com", "fay@example.com", "dan@example.com"]
    cara, eve, fay, dan = by_email.values()
    assert cara.properties == {"plan": "pro"}  # the row's property beats the batch's
    assert {ref.name for ref in cara.lists} == {"Everyone", "Extra"}
    assert {t.id for t in cara.topics} == {news.id, promos.id}
    assert {t.id for t in eve.topics} == {promos.id}  # the row's opt_out beats the batch's opt_in
    assert {t.id for t in fay.topics} == {news.id}  # opt_out cancels the opt_out topic's auto-subscription
    assert dan.properties == {"age": "30", "plan": "team"}  # merged: given keys overwrite, others stay
    assert {t.id for t in dan.topics} == {news.id}
    assert audience.lists.get(everyone.id).contacts_count == 4


def test_bulk_create_rejects_bad_batches_whole(team: Team) -> None:
    too_many = team.http.post("/audience/contacts/bulk", json={"emails": [f"u{i}@example.com" for i in range(1001)]})
    assert too_many.status_code == 422 and "emails" in too_many.json()["errors"]
    both = team.http.post(
        "/audience/contacts/bulk", json={"emails": ["a@example.com"], "contacts": [{"email": "b@x.io"}]}
    )
    assert both.status_code == 422
    unknown_list = team.http.post("/audience/contacts/bulk", json={"emails": ["a@example.com"], "list_ids": ["lst_x"]})
    assert unknown_list.status_code == 422 and "list_ids.0" in unknown_list.json()["errors"]
    bad_topic = team.http.post(
        "/audience/contacts/bulk", json={"emails": ["a@example.com"], "topics": [{"id": "t", "subscription": "maybe"}]}
    )
    assert bad_topic.status_code == 422 and "topics.0.subscription" in bad_topic.json()["errors"]
    assert team.audience.contacts.list().total == 0


def test_bulk_memberships_count_pairs(team: Team) -> None:
    audience = team.audience
    ids = audience.contacts.bulk_create(emails=[f"p{i}@example.com" for i in range(4)]).contact_ids
    lists = [audience.lists.create(name=f"L{i}").id for i in range(2)]
    topics = [audience.topics.create(name=f"T{i}").id for i in range(3)]
    audience.contacts.add_to_list(contact_id=ids[0], list_id=lists[0])
    attached = audience.contacts.bulk_attach_lists(contact_ids=ids, list_ids=lists)
    assert (attached.attached, attached.already_attached, attached.total_pairs) == (7, 1, 8)
    detached = audience.contacts.bulk_detach_lists(contact_ids=ids[:3], list_ids=lists[:1])
    assert (detached.detached, detached.not_present, detached.total_pairs) == (3, 0, 3)
    again = audience.contacts.bulk_detach_lists(contact_ids=ids[:3], list_ids=lists[:1])
    assert (again.detached, again.not_present) == (0, 3)
    subscribed = audience.contacts.bulk_subscribe_topics(contact_ids=ids, topic_ids=topics)
    assert (subscribed.subscribed, subscribed.already_subscribed, subscribed.total_pairs) == (12, 0, 12)
    assert audience.contacts.bulk_subscribe_topics(contact_ids=ids, topic_ids=topics).already_subscribed == 12
    unsubscribed = audience.contacts.bulk_unsubscribe_topics(contact_ids=ids[:2], topic_ids=topics)
    assert (unsubscribed.unsubscribed, unsubscribed.total_pairs) == (6, 6)
    assert audience.topics.get(topics[0]).contacts_count == 2
    with pytest.raises(ValidationError):
        audience.contacts.bulk_attach_lists(contact_ids=ids, list_ids=[f"l{i}" for i in range(51)])


def _segment(team: Team, groups: list[list[tuple[str, str, Any]]], **extra: Any) -> Any:
    conditions = {
        "groups": [{"conditions": [{"field": f, "operator": o, "value": v} for f, o, v in g]} for g in groups]
    }
    return team.audience.segments.create(name="S", conditions=conditions, **extra)


def test_segments_compile_every_operator(team: Team) -> None:
    audience = team.audience
    audience.properties.create(name="plan", type="string", fallback_value="free")
    audience.properties.create(name="age", type="number")
    audience.properties.create(name="vip", type="boolean")
    audience.properties.create(name="joined", type="date")
    rows = [
        ("ann@alpha.test", {"plan": "pro", "age": "34", "vip": "true", "joined": "2025-01-10"}),
        ("bob@beta.test", {"plan": "team", "age": "19", "vip": "false", "joined": "2026-06-01"}),
        ("cy@alpha.test", {"age": "60", "joined": "2026-11-30T10:00:00+00:00"}),
        ("di@gamma.test", {}),
    ]
    audience.contacts.bulk_create(contacts=[BulkContactRow(email=e, properties=p) for e, p in rows])
    unsubscribed = audience.contacts.list(search="di@").contacts[0]
    audience.contacts.update(unsubscribed.id, status="unsubscribed")

    cases: list[tuple[list[list[tuple[str, str, Any]]], set[str]]] = [
        ([[("email", "contains", "ALPHA")]], {"ann", "cy"}),
        ([[("email", "not_contains", "alpha")]], {"bob", "di"}),
        ([[("email", "equals", "bob@beta.test")]], {"bob"}),
        ([[("email", "not_equals", "bob@beta.test")]], {"ann", "cy", "di"}),
        ([[("email", "starts_with", "c")]], {"cy"}),
        ([[("email", "not_starts_with", "c")]], {"ann", "bob", "di"}),
        ([[("email", "ends_with", ".test")]], {"ann", "bob", "cy", "di"}),
        ([[("email", "not_ends_with", "alpha.test")]], {"bob", "di"}),
        ([[("status", "equals", "unsubscribed")]], {"di"}),
        ([[("plan", "equals", "free")]], {"cy", "di"}),  # the fallback value stands in for a missing one
        ([[("vip", "is_true", None)]], {"ann"}),
        ([[("vip", "is_false", None)]], {"bob"}),
        ([[("age", "greater_than", 34)]], {"cy"}),
        ([[("age", "greater_than_or_equal", "34")]], {"ann", "cy"}),
        ([[("age", "less_than", "34")]], {"bob"}),
        ([[("age", "less_than_or_equal", "34")]], {"ann", "bob"}),
        ([[("age", "not_equals", "34")]], {"bob", "cy", "di"}),
        ([[("joined", "before", "2026-01-01")]], {"ann"}),
        ([[("joined", "after", "2026-06-01")]], {"cy"}),
        # OR inside a group, AND across groups
        (
            [[("email", "contains", "alpha"), ("age", "less_than", "20")], [("age", "greater_than", "30")]],
            {"ann", "cy"},
        ),
        ([[("plan", "equals", "pro"), ("plan", "equals", "team")], [("vip", "is_false", None)]], {"bob"}),
    ]
    for groups, expected in cases:
        segment = _segment(team, groups)
        assert segment.cached_contacts_count == len(expected), groups
        listed = audience.contacts.list(segment_id=segment.id, per_page=100)
        assert {c.email.split("@")[0] for c in listed.contacts} == expected, groups


def test_segments_crud_list_filter_and_fresh_counts(team: Team) -> None:
    audience = team.audience
    vip = audience.lists.create(name="VIP")
    segment = _segment(team, [[("email", "ends_with", "@example.com")]])
    assert segment.cached_contacts_count == 0
    assert segment.condition_groups == [
        {"conditions": [{"field": "email", "operator": "ends_with", "value": "@example.com"}]}
    ]
    one = audience.contacts.create(email="one@example.com", list_id=vip.id)
    audience.contacts.create(email="two@example.com")
    assert audience.segments.get(segment.id).cached_contacts_count == 2  # kept fresh as contacts change
    scoped = _segment(team, [[("email", "contains", "o")]], list_id=vip.id)
    assert (scoped.list_id, scoped.list_name, scoped.cached_contacts_count) == (vip.id, "VIP", 1)
    assert [s.id for s in audience.segments.list(list_id=vip.id).segments] == [scoped.id]
    assert audience.segments.list().total == 2
    widened = audience.segments.update(scoped.id, list_id=None, name="All o")
    assert (widened.list_id, widened.name, widened.cached_contacts_count) == (None, "All o", 2)
    narrowed = audience.segments.update(
        scoped.id,
        conditions={"groups": [{"conditions": [{"field": "email", "operator": "starts_with", "value": "t"}]}]},
    )
    assert narrowed.cached_contacts_count == 1
    audience.contacts.delete(one.id)
    assert audience.segments.get(segment.id).cached_contacts_count == 1
    audience.segments.delete(segment.id)
    with pytest.raises(NotFoundError) as gone:
        audience.segments.get(segment.id)
    assert gone.value.message == "Segment not found."


@pytest.mark.parametrize(
    ("condition", "key"),
    [
        ({"field": "email", "operator": "sounds_like", "value": "x"}, "operator"),
        ({"field": "nickname", "operator": "equals", "value": "x"}, "field"),
        ({"field": "age", "operator": "contains", "value": "3"}, "operator"),
        ({"field": "age", "operator": "greater_than", "value": "old"}, "value"),
        ({"field": "email", "operator": "equals"}, "value"),
        ({"field": "email", "operator": "equals", "value": "x" * 1001}, "value"),
    ],
)
def test_segment_conditions_are_checked(team: Team, condition: dict[str, Any], key: str) -> None:
    team.audience.properties.create(name="age", type="number")
    response = team.http.post(
        "/audience/segments",
        json={
            "name": "Bad",
            "conditions": {
                "groups": [{"conditions": [{"field": "email", "operator": "contains", "value": "a"}, condition]}]
            },
        },  # fmt: skip
    )
    assert response.status_code == 422
    assert list(response.json()["errors"]) == [f"conditions.groups.0.conditions.1.{key}"]
    assert team.audience.segments.list().total == 0


def test_contact_status_follows_the_suppression_list(team: Team, backend: Backend) -> None:
    audience = team.audience
    bounced = audience.contacts.create(email="hard@example.com")
    complained = audience.contacts.create(email="spam@example.com")

    def suppress(conn: Connection) -> None:
        for email, reason in (("hard@example.com", "hard_bounce"), ("spam@example.com", "spam_complaint"),
                              ("later@example.com", "hard_bounce")):  # fmt: skip
            emails_service.suppress(conn, team_id=team.id, email=email, reason=reason, source="test", now=utcnow())

    backend.write(suppress)
    assert audience.contacts.get(bounced.id).status == "bounced"
    assert audience.contacts.get(complained.id).status == "complained"
    assert audience.contacts.create(email="later@example.com").status == "bounced"
    with pytest.raises(ValidationError) as refused:
        audience.contacts.update(bounced.id, status="subscribed")
    assert "status" in refused.value.errors
    assert backend.write(
        lambda conn: emails_service.unsuppress(
            conn, team_id=team.id, email="hard@example.com", actor=Actor(name="tests"), now=utcnow()
        )
    )
    assert audience.contacts.get(bounced.id).status == "subscribed"


def test_every_change_is_in_the_audit_trail(team: Team, backend: Backend) -> None:
    created = team.audience.lists.create(name="Audited")
    team.audience.contacts.create(email="audit@example.com", list_id=created.id)
    team.audience.lists.delete(created.id)

    def actions(conn: Connection) -> list[tuple[str, str]]:
        query = select(audit_log.c.action, audit_log.c.actor).where(audit_log.c.team_id == team.id)
        return [(row.action, row.actor) for row in conn.execute(query.order_by(audit_log.c.id))]

    recorded = backend.read(actions)
    audience_changes = [(a, actor) for a, actor in recorded if a.startswith("audience.")]
    assert [a for a, _ in audience_changes] == [
        "audience.list.created",
        "audience.contact.created",
        "audience.list.deleted",
    ]
    assert all(actor.startswith("api_key:") and "(lttr_" in actor for _, actor in audience_changes)


def test_the_openapi_document_describes_the_audience_structs(server: Server) -> None:
    schema = httpx.get(server.base_url + "/schema/openapi.json").json()
    operation = schema["paths"]["/api/audience/contacts/bulk"]["post"]
    assert "emails" in operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    names = set(schema["components"]["schemas"])
    assert {"Contact", "BulkImport", "Segment"} <= names


def test_bulk_rows_of_the_wrong_type_are_reported_not_fatal(team: Team) -> None:
    response = team.http.post(
        "/audience/contacts/bulk",
        json={
            "contacts": [
                "loose@example.com",
                {"email": 7},
                {"email": "ok@example.com", "properties": "x"},
                {"email": "fine@example.com"},
            ]
        },  # fmt: skip
    )
    data = response.json()["data"]
    assert response.status_code == 201
    assert [(e["index"], e["error_code"]) for e in data["errors"]] == [
        (0, "invalid_email"), (1, "invalid_email"), (2, "invalid_property_value")
    ]  # fmt: skip
    assert [c["email"] for c in data["contacts"]] == ["fine@example.com"]
    emails = team.http.post("/audience/contacts/bulk", json={"emails": [{"email": "obj@example.com"}, "a@example.com"]})
    assert [(e["index"], e["error_code"]) for e in emails.json()["data"]["errors"]] == [(0, "invalid_email")]
