"""Audience logic: lists, contacts, topics, properties and segments of one team.

Every function takes the team first and finds nothing outside it: an id of another team's list, contact, topic,
property or segment is "not found", exactly like an id that never existed. Functions run inside the caller's unit
of work and never commit; every change is recorded in the audit trail in the same transaction.

Contact status follows the suppression list: a contact whose address is suppressed (hard bounce, complaint) is
``bounced`` or ``complained`` from the moment it is created, and cannot be set back to ``subscribed`` through the
API while the suppression stands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from msgspec import UNSET
from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from postroom.audience import queries, segments
from postroom.audience import schemas as wire
from postroom.audience.values import InvalidValue, property_value
from postroom.audit import service as audit
from postroom.audit.service import Actor
from postroom.core import tokens
from postroom.core.clock import iso_resource
from postroom.core.ids import new_id
from postroom.core.openapi import Pagination
from postroom.core.pagination import PageRequest, pagination_body
from postroom.emails import service as emails_service
from postroom.emails.contact_status import status_for_suppressed
from postroom.errors import (
    ContactNotFound,
    ContactOrListNotFound,
    ContactOrTopicNotFound,
    ListNotFound,
    NotFound,
    PropertyNotFound,
    ResourceAlreadyExists,
    SegmentNotFound,
    TopicNotFound,
    TransmissionFailed,
    ValidationFailed,
)
from postroom.messages.request import parse_send_request

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def _audit(
    conn: Connection,
    actor: Actor,
    team_id: int,
    action: str,
    target: str,
    now: datetime,
    *,
    old: audit.AuditValue = None,
    new: audit.AuditValue = None,
) -> None:
    """The one place audience changes reach the audit trail."""
    actor.record(conn, team_id=team_id, action=action, target=target, old=old, new=new, now=now)


def _must(row: Row[Any] | None, missing: type[NotFound]) -> Row[Any]:
    """``row``, or the not-found error of its kind (an id of another team is not found either)."""
    if row is None:
        raise missing()
    return row


def _page(total: int, page: PageRequest) -> Pagination:
    return Pagination(**pagination_body(total, page))


def normal_email(value: Any) -> str | None:
    """``value`` trimmed and lower-cased if it is a valid address of at most 255 characters, else None."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if len(email) > wire.MAX_EMAIL or not _EMAIL.fullmatch(email):
        return None
    return email


def _required_email(value: str) -> str:
    if not value.strip():
        raise ValidationFailed({"email": ["The email field is required."]})
    email = normal_email(value)
    if email is None:
        raise ValidationFailed({"email": ["The email must be a valid email address."]})
    return email


def _required_name(value: str, key: str = "name") -> str:
    name = value.strip()
    if not name:
        raise ValidationFailed({key: [f"The {key} field is required."]})
    return name


# -- lists ----------------------------------------------------------------------------------------------------


def _list(row: Row[Any]) -> wire.AudienceList:
    return wire.AudienceList(id=row.id, name=row.name, contacts_count=int(row.contacts_count))


def _found_list(conn: Connection, team_id: int, list_id: str) -> Row[Any]:
    return _must(queries.list_row(conn, team_id, list_id), ListNotFound)


def list_lists(conn: Connection, *, team_id: int, page: PageRequest) -> wire.ListPage:
    rows, total = queries.lists_page(conn, team_id, page.offset, page.per_page)
    return wire.ListPage(lists=[_list(r) for r in rows], pagination=_page(total, page))


def get_list(conn: Connection, *, team_id: int, list_id: str) -> wire.AudienceList:
    return _list(_found_list(conn, team_id, list_id))


def _unique_list_name(conn: Connection, team_id: int, name: str, list_id: str | None) -> None:
    existing = queries.list_named(conn, team_id, name)
    if existing is not None and existing != list_id:
        raise ResourceAlreadyExists("A list with this name already exists.")


def create_list(
    conn: Connection, *, team_id: int, data: wire.ListInput, actor: Actor, now: datetime
) -> wire.AudienceList:
    name = _required_name(data.name)
    _unique_list_name(conn, team_id, name, None)
    list_id = new_id("lst")
    queries.insert_list(conn, team_id, list_id, name, now)
    _audit(conn, actor, team_id, "audience.list.created", f"list:{list_id}", now, new={"name": name})
    return wire.AudienceList(id=list_id, name=name, contacts_count=0)


def update_list(
    conn: Connection, *, team_id: int, list_id: str, changes: wire.ListChanges, actor: Actor, now: datetime
) -> wire.AudienceList:
    row = _found_list(conn, team_id, list_id)
    if isinstance(changes.name, str):
        name = _required_name(changes.name)
        if name != row.name:
            _unique_list_name(conn, team_id, name, list_id)
            queries.rename_list(conn, team_id, list_id, name)
            _audit(conn, actor, team_id, "audience.list.updated", f"list:{list_id}", now, old=row.name, new=name)
            return wire.AudienceList(id=list_id, name=name, contacts_count=int(row.contacts_count))
    return _list(row)


def delete_list(conn: Connection, *, team_id: int, list_id: str, actor: Actor, now: datetime) -> None:
    row = _found_list(conn, team_id, list_id)
    queries.delete_lists(conn, team_id, [list_id])
    queries.mark_counts_stale(conn, team_id)
    _audit(conn, actor, team_id, "audience.list.deleted", f"list:{list_id}", now, old=row.name)


def delete_lists(
    conn: Connection, *, team_id: int, data: wire.ListIdsInput, actor: Actor, now: datetime
) -> wire.BulkDeleted:
    """Every id must be one of the team's lists; otherwise nothing is deleted (404)."""
    list_ids = list(dict.fromkeys(data.list_ids))
    if queries.found_list_ids(conn, team_id, list_ids) != set(list_ids):
        raise ListNotFound()
    deleted = queries.delete_lists(conn, team_id, list_ids)
    queries.mark_counts_stale(conn, team_id)
    _audit(conn, actor, team_id, "audience.lists.deleted", f"lists:{len(list_ids)}", now, old=list_ids)
    return wire.BulkDeleted(deleted=deleted)


# -- properties -----------------------------------------------------------------------------------------------


def _property(row: Row[Any]) -> wire.Property:
    return wire.Property(
        id=row.id,
        name=row.name,
        type=row.type,
        fallback_value=row.fallback_value,
        created_at=iso_resource(row.created_at),
    )


def _found_property(conn: Connection, team_id: int, property_id: str) -> Row[Any]:
    return _must(queries.property_row(conn, team_id, property_id), PropertyNotFound)


def _check_fallback(kind: str, value: str | None) -> None:
    if value is None:
        return
    try:
        property_value(kind, value)
    except InvalidValue as invalid:
        raise ValidationFailed({"fallback_value": [f"The fallback_value {invalid}."]}) from None


def list_properties(conn: Connection, *, team_id: int, page: PageRequest) -> wire.PropertyPage:
    rows, total = queries.properties_page(conn, team_id, page.offset, page.per_page)
    return wire.PropertyPage(properties=[_property(r) for r in rows], pagination=_page(total, page))


def get_property(conn: Connection, *, team_id: int, property_id: str) -> wire.Property:
    return _property(_found_property(conn, team_id, property_id))


def create_property(
    conn: Connection, *, team_id: int, data: wire.PropertyInput, actor: Actor, now: datetime
) -> wire.Property:
    _check_fallback(data.type, data.fallback_value)
    if data.name in segments.BUILT_IN_FIELDS:
        raise ValidationFailed({"name": [f"The name '{data.name}' is reserved."]})
    if data.name in queries.properties_by_name(conn, team_id):
        raise ResourceAlreadyExists("A property with this name already exists.")
    property_id = new_id("prop")
    values = {
        "id": property_id,
        "team_id": team_id,
        "name": data.name,
        "type": data.type,
        "fallback_value": data.fallback_value,
        "created_at": now,
    }
    queries.insert_property(conn, values)
    _audit(conn, actor, team_id, "audience.property.created", f"property:{property_id}", now, new=data.name)
    return wire.Property(
        id=property_id,
        name=data.name,
        type=data.type,
        fallback_value=data.fallback_value,
        created_at=iso_resource(now),
    )


def update_property(
    conn: Connection, *, team_id: int, property_id: str, changes: wire.PropertyChanges, actor: Actor, now: datetime
) -> wire.Property:
    row = _found_property(conn, team_id, property_id)
    if changes.fallback_value is UNSET or changes.fallback_value == row.fallback_value:
        return _property(row)
    fallback = changes.fallback_value if isinstance(changes.fallback_value, str) else None
    _check_fallback(row.type, fallback)
    queries.update_property(conn, team_id, property_id, {"fallback_value": fallback})
    queries.mark_counts_stale(conn, team_id)
    target = f"property:{property_id}"
    _audit(conn, actor, team_id, "audience.property.updated", target, now, old=row.fallback_value, new=fallback)
    return _property(_found_property(conn, team_id, property_id))


def delete_property(conn: Connection, *, team_id: int, property_id: str, actor: Actor, now: datetime) -> None:
    """The property goes, and so does every contact's value for it."""
    row = _found_property(conn, team_id, property_id)
    queries.delete_property(conn, team_id, property_id)
    queries.strip_property(conn, team_id, row.name)
    queries.mark_counts_stale(conn, team_id)
    _audit(conn, actor, team_id, "audience.property.deleted", f"property:{property_id}", now, old=row.name)


def checked_properties(
    values: Mapping[str, Any], defined: Mapping[str, Row[Any]], key: str = "properties", *, allow_null: bool = False
) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """``values`` as stored strings (None: remove the key, when ``allow_null``), and the errors by
    ``properties.<name>``: an unknown name, or a value that does not fit the property's type."""
    stored: dict[str, str | None] = {}
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        prop = defined.get(name)
        if prop is None:
            errors[f"{key}.{name}"] = [f"The property '{name}' is not defined for this team."]
        elif value is None and allow_null:
            stored[name] = None
        else:
            try:
                stored[name] = property_value(prop.type, value)
            except InvalidValue as invalid:
                errors[f"{key}.{name}"] = [f"The property '{name}' {invalid}."]
    return stored, errors


# -- contacts -------------------------------------------------------------------------------------------------


def _contacts(conn: Connection, rows: Sequence[Row[Any]]) -> list[wire.Contact]:
    lists, subscribed = queries.refs_of(conn, [row.id for row in rows])
    return [
        wire.Contact(
            id=row.id,
            email=row.email,
            status=row.status,
            properties=dict(row.properties or {}),
            created_at=iso_resource(row.created_at),
            lists=[wire.Ref(id=r.id, name=r.name) for r in lists.get(row.id, [])],
            topics=[wire.Ref(id=r.id, name=r.name) for r in subscribed.get(row.id, [])],
        )
        for row in rows
    ]


def _found_contact(conn: Connection, team_id: int, contact_id: str) -> Row[Any]:
    return _must(queries.contact_row(conn, team_id, contact_id), ContactNotFound)


def get_contact(conn: Connection, *, team_id: int, contact_id: str) -> wire.Contact:
    return _contacts(conn, [_found_contact(conn, team_id, contact_id)])[0]


@dataclass(frozen=True, slots=True)
class ContactQuery:
    """The filters of ``GET /audience/contacts``, checked."""

    search: str | None = None
    status: str | None = None
    list_id: str | None = None
    segment_id: str | None = None


def check_contact_query(search: str | None, status: str | None) -> None:
    errors: dict[str, list[str]] = {}
    if search is not None and len(search) > wire.MAX_SEARCH:
        errors["search"] = [f"The search must not be greater than {wire.MAX_SEARCH} characters."]
    elif search is not None and "\x00" in search:
        errors["search"] = ["The search must not contain NUL characters."]
    if status is not None and status not in wire.CONTACT_STATUSES:
        errors["status"] = [f"The status must be one of: {', '.join(wire.CONTACT_STATUSES)}."]
    if errors:
        raise ValidationFailed(errors)


def segment_expression(conn: Connection, team_id: int, segment_id: str) -> Any:
    row = _found_segment(conn, team_id, segment_id)
    return segments.compile_groups(row.condition_groups, queries.properties_by_name(conn, team_id), row.list_id)


def list_contacts(conn: Connection, *, team_id: int, query: ContactQuery, page: PageRequest) -> wire.ContactPage:
    check_contact_query(query.search, query.status)
    if query.list_id is not None:
        _found_list(conn, team_id, query.list_id)
    segment = segment_expression(conn, team_id, query.segment_id) if query.segment_id is not None else None
    found = queries.contacts_query(
        team_id, list_id=query.list_id, status=query.status, search=query.search, segment=segment
    )
    rows, total = queries.contacts_page(conn, found, page.offset, page.per_page)
    return wire.ContactPage(contacts=_contacts(conn, rows), pagination=_page(total, page))


def _new_contact_row(
    team_id: int, email: str, properties: Mapping[str, Any], status: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id("ctc"),
        "team_id": team_id,
        "email": email,
        "status": status,
        "properties": dict(properties),
        "created_at": now,
        "updated_at": now,
    }


def _contact_exists(email: str) -> ResourceAlreadyExists:
    return ResourceAlreadyExists(f"A contact with the email {email} already exists.")


def create_contact(
    conn: Connection,
    *,
    team_id: int,
    data: wire.ContactInput,
    actor: Actor,
    now: datetime,
    opt_in: OptInSender | None = None,
) -> wire.Contact:
    """A new contact, on ``list_id`` if given and subscribed to every ``opt_out`` topic. With ``double_opt_in``
    it starts ``unverified`` and is sent the confirmation email in the same transaction (see ``send_opt_in``)."""
    email = _required_email(data.email)
    defined = queries.properties_by_name(conn, team_id)
    properties, errors = checked_properties(data.properties or {}, defined)
    if errors:
        raise ValidationFailed(errors)
    if data.list_id is not None:
        _found_list(conn, team_id, data.list_id)
    if queries.contact_id_for_email(conn, team_id, email) is not None:
        raise _contact_exists(email)
    initial = "subscribed" if data.double_opt_in is None else "unverified"
    status = status_for_suppressed(conn, team_id, [email]).get(email, initial)
    row = _new_contact_row(team_id, email, properties, status, now)
    try:
        with conn.begin_nested():
            queries.insert_contacts(conn, [row])
    except IntegrityError:  # the same address, created concurrently
        raise _contact_exists(email) from None
    if data.list_id is not None:
        queries.insert_pairs(conn, "list", [(row["id"], data.list_id)])
    queries.insert_pairs(conn, "topic", [(row["id"], t) for t in queries.opt_out_topic_ids(conn, team_id)])
    queries.mark_counts_stale(conn, team_id)
    _audit(conn, actor, team_id, "audience.contact.created", f"contact:{row['id']}", now, new=email)
    if data.double_opt_in is not None:
        if opt_in is None:
            raise ValidationFailed({"double_opt_in": ["Double opt-in is not available here."]})
        send_opt_in(conn, team_id=team_id, contact_id=row["id"], email=email, request=data.double_opt_in,
                    sender=opt_in, now=now)  # fmt: skip
    return get_contact(conn, team_id=team_id, contact_id=row["id"])


def update_contact(
    conn: Connection, *, team_id: int, contact_id: str, changes: wire.ContactChanges, actor: Actor, now: datetime
) -> wire.Contact:
    row = _found_contact(conn, team_id, contact_id)
    values: dict[str, Any] = {}
    if isinstance(changes.email, str):
        email = _required_email(changes.email)
        if email != row.email:
            other = queries.contact_id_for_email(conn, team_id, email)
            if other is not None:
                raise _contact_exists(email)
            values["email"] = email
    if isinstance(changes.status, str) and changes.status != row.status:
        address = values.get("email", row.email)
        suppressed = status_for_suppressed(conn, team_id, [address]).get(address)
        if suppressed is not None and changes.status == "subscribed":
            raise ValidationFailed(
                {"status": [f"The address is on the suppression list ({suppressed}); it cannot be subscribed."]}
            )
        values["status"] = changes.status
    if isinstance(changes.properties, dict):
        defined = queries.properties_by_name(conn, team_id)
        given, errors = checked_properties(changes.properties, defined, allow_null=True)
        if errors:
            raise ValidationFailed(errors)
        merged = {**(row.properties or {}), **given}
        merged = {k: v for k, v in merged.items() if v is not None}
        if merged != (row.properties or {}):
            values["properties"] = merged
    if values:
        queries.update_contact(conn, team_id, contact_id, {**values, "updated_at": now})
        queries.mark_counts_stale(conn, team_id)
        old = {k: getattr(row, k) for k in values}
        _audit(conn, actor, team_id, "audience.contact.updated", f"contact:{contact_id}", now, old=old, new=values)
    return get_contact(conn, team_id=team_id, contact_id=contact_id)


def delete_contact(conn: Connection, *, team_id: int, contact_id: str, actor: Actor, now: datetime) -> None:
    row = _found_contact(conn, team_id, contact_id)
    queries.delete_contact(conn, team_id, contact_id)
    queries.mark_counts_stale(conn, team_id)
    _audit(conn, actor, team_id, "audience.contact.deleted", f"contact:{contact_id}", now, old=row.email)


# -- memberships ----------------------------------------------------------------------------------------------


def _member_pair(conn: Connection, team_id: int, kind: str, contact_id: str, group_id: str) -> None:
    """404 unless both the contact and the list (or topic) are the team's."""
    missing = ContactOrListNotFound() if kind == "list" else ContactOrTopicNotFound()
    if queries.contact_row(conn, team_id, contact_id) is None:
        raise missing
    found = queries.found_list_ids if kind == "list" else queries.found_topic_ids
    if not found(conn, team_id, [group_id]):
        raise missing


def join(
    conn: Connection, *, team_id: int, kind: str, contact_id: str, group_id: str, actor: Actor, now: datetime
) -> bool:
    """Put the contact on the list (``kind="list"``) or subscribe it to the topic; True if it was not already."""
    _member_pair(conn, team_id, kind, contact_id, group_id)
    if queries.existing_pairs(conn, kind, [contact_id], [group_id]):
        return False
    queries.insert_pairs(conn, kind, [(contact_id, group_id)])
    if kind == "list":
        queries.mark_counts_stale(conn, team_id)
    _audit(conn, actor, team_id, f"audience.contact.{kind}_joined", f"contact:{contact_id}", now, new=group_id)
    return True


def leave(
    conn: Connection, *, team_id: int, kind: str, contact_id: str, group_id: str, actor: Actor, now: datetime
) -> None:
    """Take the contact off the list or topic; nothing to do when it was not on it."""
    _member_pair(conn, team_id, kind, contact_id, group_id)
    if queries.delete_pairs(conn, kind, [(contact_id, group_id)]):
        if kind == "list":
            queries.mark_counts_stale(conn, team_id)
        _audit(conn, actor, team_id, f"audience.contact.{kind}_left", f"contact:{contact_id}", now, old=group_id)


def _bulk_pairs(
    conn: Connection, team_id: int, kind: str, contact_ids: Sequence[str], group_ids: Sequence[str]
) -> list[tuple[str, str]]:
    """Every (contact, group) pair, after checking that every id is the team's (404 otherwise)."""
    contact_ids = list(dict.fromkeys(contact_ids))
    group_ids = list(dict.fromkeys(group_ids))
    missing = ContactOrListNotFound() if kind == "list" else ContactOrTopicNotFound()
    if queries.found_contact_ids(conn, team_id, contact_ids) != set(contact_ids):
        raise missing
    found = queries.found_list_ids if kind == "list" else queries.found_topic_ids
    if found(conn, team_id, group_ids) != set(group_ids):
        raise missing
    return [(c, g) for c in contact_ids for g in group_ids]


def bulk_join(
    conn: Connection,
    *,
    team_id: int,
    kind: str,
    contact_ids: Sequence[str],
    group_ids: Sequence[str],
    actor: Actor,
    now: datetime,
) -> tuple[int, int, int]:
    """(newly joined, already there, total pairs)."""
    pairs = _bulk_pairs(conn, team_id, kind, contact_ids, group_ids)
    existing = queries.existing_pairs(conn, kind, [p[0] for p in pairs], list({p[1] for p in pairs}))
    new = [p for p in pairs if p not in existing]
    queries.insert_pairs(conn, kind, new)
    if new:
        if kind == "list":
            queries.mark_counts_stale(conn, team_id)
        _audit(conn, actor, team_id, f"audience.contacts.{kind}s_joined", f"{kind}s:{len(set(group_ids))}", now,
               new={"contacts": len(set(contact_ids)), "pairs": len(new)})  # fmt: skip
    return len(new), len(pairs) - len(new), len(pairs)


def bulk_leave(
    conn: Connection,
    *,
    team_id: int,
    kind: str,
    contact_ids: Sequence[str],
    group_ids: Sequence[str],
    actor: Actor,
    now: datetime,
) -> tuple[int, int]:
    """(removed, total pairs)."""
    pairs = _bulk_pairs(conn, team_id, kind, contact_ids, group_ids)
    removed = queries.delete_pairs(conn, kind, pairs)
    if removed:
        if kind == "list":
            queries.mark_counts_stale(conn, team_id)
        _audit(conn, actor, team_id, f"audience.contacts.{kind}s_left", f"{kind}s:{len(set(group_ids))}", now,
               old={"contacts": len(set(contact_ids)), "pairs": removed})  # fmt: skip
    return removed, len(pairs)


# -- topics ---------------------------------------------------------------------------------------------------


def _topic(row: Row[Any]) -> wire.Topic:
    return wire.Topic(
        id=row.id,
        name=row.name,
        description=row.description,
        default_subscription=row.default_subscription,
        visibility=row.visibility,
        contacts_count=int(row.contacts_count),
        created_at=iso_resource(row.created_at),
    )


def _found_topic(conn: Connection, team_id: int, topic_id: str) -> Row[Any]:
    return _must(queries.topic_row(conn, team_id, topic_id), TopicNotFound)


def list_topics(conn: Connection, *, team_id: int, page: PageRequest) -> wire.TopicPage:
    rows, total = queries.topics_page(conn, team_id, page.offset, page.per_page)
    return wire.TopicPage(topics=[_topic(r) for r in rows], pagination=_page(total, page))


def get_topic(conn: Connection, *, team_id: int, topic_id: str) -> wire.Topic:
    return _topic(_found_topic(conn, team_id, topic_id))


def create_topic(conn: Connection, *, team_id: int, data: wire.TopicInput, actor: Actor, now: datetime) -> wire.Topic:
    """An ``opt_out`` topic subscribes the contacts created from now on (not the existing ones)."""
    topic_id, name = new_id("top"), _required_name(data.name)
    values = {
        "id": topic_id,
        "team_id": team_id,
        "name": name,
        "description": data.description,
        "default_subscription": data.default_subscription,
        "visibility": data.visibility,
        "created_at": now,
    }
    queries.insert_topic(conn, values)
    _audit(conn, actor, team_id, "audience.topic.created", f"topic:{topic_id}", now, new=name)
    return get_topic(conn, team_id=team_id, topic_id=topic_id)


def update_topic(
    conn: Connection, *, team_id: int, topic_id: str, changes: wire.TopicChanges, actor: Actor, now: datetime
) -> wire.Topic:
    row = _found_topic(conn, team_id, topic_id)
    if changes.default_subscription is not UNSET and changes.default_subscription != row.default_subscription:
        raise ValidationFailed({"default_subscription": ["The default_subscription of a topic cannot be changed."]})
    values: dict[str, Any] = {}
    if isinstance(changes.name, str):
        values["name"] = _required_name(changes.name)
    if changes.description is not UNSET:
        values["description"] = changes.description
    if isinstance(changes.visibility, str):
        values["visibility"] = changes.visibility
    values = {k: v for k, v in values.items() if v != getattr(row, k)}
    if values:
        queries.update_topic(conn, team_id, topic_id, values)
        old = {k: getattr(row, k) for k in values}
        _audit(conn, actor, team_id, "audience.topic.updated", f"topic:{topic_id}", now, old=old, new=values)
    return get_topic(conn, team_id=team_id, topic_id=topic_id)


def delete_topic(conn: Connection, *, team_id: int, topic_id: str, actor: Actor, now: datetime) -> None:
    row = _found_topic(conn, team_id, topic_id)
    queries.delete_topic(conn, team_id, topic_id)
    _audit(conn, actor, team_id, "audience.topic.deleted", f"topic:{topic_id}", now, old=row.name)


# -- segments -------------------------------------------------------------------------------------------------


def _segment(row: Row[Any], count: int | None) -> wire.Segment:
    return wire.Segment(
        id=row.id,
        name=row.name,
        list_id=row.list_id,
        list_name=row.list_name,
        condition_groups=[
            wire.ConditionGroup(
                conditions=[
                    wire.Condition(field=c["field"], operator=c["operator"], value=c.get("value"))
                    for c in group["conditions"]
                ]
            )
            for group in row.condition_groups
        ],
        cached_contacts_count=count,
        created_at=iso_resource(row.created_at),
    )


def _segment_count(conn: Connection, team_id: int, row: Row[Any], properties: Mapping[str, Any]) -> int:
    expression = segments.compile_groups(row.condition_groups, properties, row.list_id)
    return queries.count_contacts(conn, queries.contacts_query(team_id, segment=expression))


def count_segment(conn: Connection, *, team_id: int, segment_id: str) -> int:
    """How many of the team's contacts the segment matches now (one COUNT in the database)."""
    row = _found_segment(conn, team_id, segment_id)
    return _segment_count(conn, team_id, row, queries.properties_by_name(conn, team_id))


def _fresh(conn: Connection, team_id: int, rows: Sequence[Row[Any]]) -> list[wire.Segment]:
    """The segments with their counts, recomputing (and storing) those whose contacts changed since."""
    properties: dict[str, Row[Any]] | None = None
    shaped = []
    for row in rows:
        count = row.cached_contacts_count
        if row.count_stale or count is None:
            properties = properties if properties is not None else queries.properties_by_name(conn, team_id)
            count = _segment_count(conn, team_id, row, properties)
            queries.update_segment(conn, team_id, row.id, {"cached_contacts_count": count, "count_stale": False})
        shaped.append(_segment(row, count))
    return shaped


def _found_segment(conn: Connection, team_id: int, segment_id: str) -> Row[Any]:
    return _must(queries.segment_row(conn, team_id, segment_id), SegmentNotFound)


def list_segments(conn: Connection, *, team_id: int, list_id: str | None, page: PageRequest) -> wire.SegmentPage:
    if list_id is not None:
        _found_list(conn, team_id, list_id)
    rows, total = queries.segments_page(conn, team_id, list_id, page.offset, page.per_page)
    return wire.SegmentPage(segments=_fresh(conn, team_id, rows), pagination=_page(total, page))


def get_segment(conn: Connection, *, team_id: int, segment_id: str) -> wire.Segment:
    return _fresh(conn, team_id, [_found_segment(conn, team_id, segment_id)])[0]


def create_segment(
    conn: Connection, *, team_id: int, data: wire.SegmentInput, actor: Actor, now: datetime
) -> wire.Segment:
    name = _required_name(data.name)
    groups = segments.check_conditions(data.conditions, queries.properties_by_name(conn, team_id))
    if data.list_id is not None:
        _found_list(conn, team_id, data.list_id)
    segment_id = new_id("seg")
    queries.insert_segment(
        conn,
        {
            "id": segment_id,
            "team_id": team_id,
            "name": name,
            "list_id": data.list_id,
            "condition_groups": groups,
            "cached_contacts_count": None,
            "count_stale": True,
            "created_at": now,
        },
    )
    _audit(
        conn,
        actor,
        team_id,
        "audience.segment.created",
        f"segment:{segment_id}",
        now,
        new={"name": name, "groups": groups},
    )
    return get_segment(conn, team_id=team_id, segment_id=segment_id)


def update_segment(
    conn: Connection, *, team_id: int, segment_id: str, changes: wire.SegmentChanges, actor: Actor, now: datetime
) -> wire.Segment:
    row = _found_segment(conn, team_id, segment_id)
    values: dict[str, Any] = {}
    if isinstance(changes.name, str):
        values["name"] = _required_name(changes.name)
    if isinstance(changes.conditions, wire.ConditionsInput):
        values["condition_groups"] = segments.check_conditions(
            changes.conditions, queries.properties_by_name(conn, team_id)
        )
    if changes.list_id is not UNSET:
        if isinstance(changes.list_id, str):
            _found_list(conn, team_id, changes.list_id)
        values["list_id"] = changes.list_id
    values = {k: v for k, v in values.items() if v != getattr(row, k)}
    if values:
        queries.update_segment(conn, team_id, segment_id, {**values, "count_stale": True})
        old = {k: getattr(row, k) for k in values}
        _audit(conn, actor, team_id, "audience.segment.updated", f"segment:{segment_id}", now, old=old, new=values)
    return get_segment(conn, team_id=team_id, segment_id=segment_id)


def delete_segment(conn: Connection, *, team_id: int, segment_id: str, actor: Actor, now: datetime) -> None:
    row = _found_segment(conn, team_id, segment_id)
    queries.delete_segment(conn, team_id, segment_id)
    _audit(conn, actor, team_id, "audience.segment.deleted", f"segment:{segment_id}", now, old=row.name)


# -- double opt-in -------------------------------------------------------------------------------------------

OPT_IN_PURPOSE = "audience-opt-in"
OPT_IN_LIFETIME = timedelta(days=7)
_SEND_FIELDS = {"from": "from", "from_name": "from_name", "subject": "subject", "template_slug": "template_slug"}


@dataclass(frozen=True, slots=True)
class OptInSender:
    """What sending a confirmation needs: the server secret (token key), this server's mail name, the base URL
    of the public confirmation link, and the API key the send is recorded under."""

    secret: bytes
    mail_hostname: str
    link_base: str
    api_key_id: str | None


def opt_in_token(secret: bytes, *, team_id: int, contact_id: str, redirect_url: str, now: datetime) -> str:
    """The signed, expiring confirmation token; its payload is ``<team id>|<contact id>|<redirect URL>``."""
    expires = int((now + OPT_IN_LIFETIME).timestamp())
    return tokens.make(secret, OPT_IN_PURPOSE, f"{team_id}|{contact_id}|{redirect_url}", expires_at=expires)


def send_opt_in(
    conn: Connection,
    *,
    team_id: int,
    contact_id: str,
    email: str,
    request: wire.DoubleOptIn,
    sender: OptInSender,
    now: datetime,
) -> None:
    """Queue the confirmation through the normal send path (template by slug, from a domain the team may send
    from). The template gets ``confirmation_url`` and ``email``. A 4xx of the send is named under
    ``double_opt_in``; a send that queues nothing (the address is suppressed) is 502 ``transmission_failed``."""
    if not request.redirect_url.startswith(("https://", "http://")):
        raise ValidationFailed({"double_opt_in.redirect_url": ["The redirect_url must be an http(s) URL."]})
    token = opt_in_token(sender.secret, team_id=team_id, contact_id=contact_id, redirect_url=request.redirect_url,
                         now=now)  # fmt: skip
    body: dict[str, Any] = {
        "from": request.from_,
        "to": [email],
        "subject": request.subject,
        "template_slug": request.template_slug,
        "substitution_data": {"confirmation_url": f"{sender.link_base}/opt-in/{token}", "email": email},
    }
    if request.from_name:
        body["from_name"] = request.from_name
    try:
        send = parse_send_request(body)
    except ValidationFailed as invalid:
        raise ValidationFailed(
            {f"double_opt_in.{_SEND_FIELDS.get(key, key)}": messages for key, messages in invalid.errors.items()}
        ) from None
    accepted = emails_service.accept(
        conn, team_id=team_id, api_key_id=sender.api_key_id, request=send, now=now, mail_hostname=sender.mail_hostname
    )
    if accepted.accepted == 0:
        raise TransmissionFailed("The confirmation email could not be queued: the address is suppressed.")


def confirm_opt_in(conn: Connection, *, secret: bytes, token: str, now: datetime) -> str | None:
    """Move the token's contact from ``unverified`` to ``subscribed`` and return the redirect URL; None for a bad,
    expired or already used token (a contact that is no longer unverified)."""
    payload = tokens.read(secret, OPT_IN_PURPOSE, token, now=now.timestamp())
    if payload is None or payload.count("|") < 2:
        return None
    team_text, contact_id, redirect_url = payload.split("|", 2)
    row = queries.contact_row(conn, int(team_text), contact_id)
    if row is None or row.status != "unverified":
        return None
    queries.update_contact(conn, row.team_id, contact_id, {"status": "subscribed", "updated_at": now})
    queries.mark_counts_stale(conn, row.team_id)
    actor = Actor(name=f"recipient:{row.email}", ip=None)
    _audit(conn, actor, row.team_id, "audience.contact.confirmed", f"contact:{contact_id}", now, old="unverified",
           new="subscribed")  # fmt: skip
    return redirect_url


# -- bulk create ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    """One accepted row of a bulk create: its address, property values, lists and topic choices."""

    index: int
    email: str
    properties: dict[str, str]
    list_ids: list[str]
    topics: dict[str, str]
    """topic id → ``opt_in`` / ``opt_out``; the row's own choice already overrides the batch's."""


class _RowError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _batch_settings(
    conn: Connection, team_id: int, data: wire.BulkContactsInput, defined: Mapping[str, Row[Any]]
) -> tuple[list[Any], dict[str, str], list[str], dict[str, str]]:
    """The rows, and the batch-wide properties, lists and topics (checked: a bad batch-wide value is a 422)."""
    given = [name for name in ("emails", "contacts") if getattr(data, name) is not UNSET]
    if len(given) != 1:
        message = "Provide exactly one of emails or contacts."
        raise ValidationFailed({"emails": [message], "contacts": [message]})
    # An ``emails`` entry is only ever an address; a ``contacts`` entry is a row object.
    rows: list[Any] = (
        [{"email": e} for e in data.emails] if isinstance(data.emails, list) else list(data.contacts or [])
    )
    properties, errors = checked_properties(data.properties or {}, defined)
    list_ids = list(dict.fromkeys([*([data.list_id] if data.list_id else []), *(data.list_ids or [])]))
    if len(list_ids) > wire.MAX_BULK_GROUPS:
        errors["list_ids"] = [f"At most {wire.MAX_BULK_GROUPS} lists may be given."]
    found_lists = queries.found_list_ids(conn, team_id, list_ids)
    for position, list_id in enumerate(data.list_ids or []):
        if list_id not in found_lists:
            errors[f"list_ids.{position}"] = ["List not found."]
    if data.list_id and data.list_id not in found_lists:
        errors["list_id"] = ["List not found."]
    topics: dict[str, str] = {choice.id: choice.subscription for choice in data.topics or []}
    found_topics = queries.found_topic_ids(conn, team_id, list(topics))
    for position, choice in enumerate(data.topics or []):
        if choice.id not in found_topics:
            errors[f"topics.{position}.id"] = ["Topic not found."]
    if errors:
        raise ValidationFailed(errors)
    return rows, {k: v for k, v in properties.items() if v is not None}, list_ids, topics


def _read_row(
    conn: Connection,
    team_id: int,
    index: int,
    raw: Any,
    defined: Mapping[str, Row[Any]],
    batch: tuple[dict[str, str], list[str], dict[str, str]],
    known: dict[str, set[str]],
) -> _Row:
    """One row of ``emails`` (a string) or ``contacts`` (an object), merged with the batch; ``_RowError`` if bad."""
    batch_properties, batch_lists, batch_topics = batch
    if not isinstance(raw, dict):
        raise _RowError("invalid_email", "Each row must be an object with an email.")
    fields: Mapping[str, Any] = raw
    address = fields.get("email")
    if address is None or (isinstance(address, str) and not address.strip()):
        raise _RowError("missing_email", "The email field is required.")
    email = normal_email(address)
    if email is None:
        raise _RowError("invalid_email", "The email must be a valid email address of at most 255 characters.")
    row_properties = fields.get("properties") or {}
    if not isinstance(row_properties, dict):
        raise _RowError("invalid_property_value", "The properties must be an object.")
    stored, errors = checked_properties(row_properties, defined)
    for key, messages in errors.items():
        name = key.removeprefix("properties.")
        code = "unknown_property_key" if name not in defined else "invalid_property_value"
        raise _RowError(code, messages[0])
    row_lists = fields.get("list_ids") or []
    if not isinstance(row_lists, list) or not all(isinstance(i, str) for i in row_lists):
        raise _RowError("unknown_list", "The list_ids must be a list of list ids.")
    unknown = set(row_lists) - _known(conn, team_id, "list", row_lists, known)
    if unknown:
        raise _RowError("unknown_list", f"List not found: {sorted(unknown)[0]}.")
    row_topics = fields.get("topics") or []
    if not isinstance(row_topics, list):
        raise _RowError("unknown_topic", "The topics must be a list.")
    choices: dict[str, str] = {}
    for choice in row_topics:
        topic_id = choice.get("id") if isinstance(choice, dict) else None
        if not isinstance(topic_id, str):
            raise _RowError("unknown_topic", "Each topic needs an id.")
        subscription = choice.get("subscription", "opt_in")
        if subscription not in ("opt_in", "opt_out"):
            raise _RowError("invalid_topic_subscription", "The subscription must be opt_in or opt_out.")
        choices[topic_id] = subscription
    unknown = set(choices) - _known(conn, team_id, "topic", list(choices), known)
    if unknown:
        raise _RowError("unknown_topic", f"Topic not found: {sorted(unknown)[0]}.")
    return _Row(
        index=index,
        email=email,
        properties={**batch_properties, **{k: v for k, v in stored.items() if v is not None}},
        list_ids=list(dict.fromkeys([*batch_lists, *row_lists])),
        topics={**batch_topics, **choices},
    )


def _known(conn: Connection, team_id: int, kind: str, ids: Sequence[str], known: dict[str, set[str]]) -> set[str]:
    """The team's lists (or topics) among ``ids``, remembered across the rows of one request."""
    seen = known.setdefault(kind, set())
    unseen = [i for i in ids if i not in seen]
    if unseen:
        finder = queries.found_list_ids if kind == "list" else queries.found_topic_ids
        seen.update(finder(conn, team_id, unseen))
    return seen


def bulk_create_contacts(
    conn: Connection, *, team_id: int, data: wire.BulkContactsInput, actor: Actor, now: datetime
) -> wire.BulkImport:
    """Up to 1,000 contacts in one transaction. Addresses are trimmed, lower-cased and de-duplicated (the first
    row of an address counts; later ones are ignored). A bad row is skipped and reported by its 0-based index;
    the others are written.

    New contacts get the batch's properties overridden by the row's, the batch's and the row's lists, and the
    topics that end up ``opt_in``: every ``opt_out``-default topic, then the batch's choices, then the row's (a
    row's ``opt_out`` beats the batch's ``opt_in`` and the topic's default). Existing contacts are put on the
    lists too; with ``update_existing`` their properties are merged (given keys overwrite) and their topic
    choices applied, and they count as ``updated``; without it they are left as they are and count as
    ``already_existed``.
    """
    defined = queries.properties_by_name(conn, team_id)
    raw_rows, batch_properties, batch_lists, batch_topics = _batch_settings(conn, team_id, data, defined)
    known: dict[str, set[str]] = {"list": set(batch_lists), "topic": set(batch_topics)}
    accepted: dict[str, _Row] = {}
    errors: list[wire.BulkContactError] = []
    for index, raw in enumerate(raw_rows):
        try:
            row = _read_row(conn, team_id, index, raw, defined, (batch_properties, batch_lists, batch_topics), known)
        except _RowError as bad:
            email = raw.get("email") if isinstance(raw, dict) else raw
            shown = email.strip().lower() if isinstance(email, str) and email.strip() else None
            errors.append(wire.BulkContactError(index=index, email=shown, error_code=bad.code, error=bad.message))
            continue
        accepted.setdefault(row.email, row)

    existing = queries.contacts_by_email(conn, team_id, list(accepted))
    suppressed = status_for_suppressed(conn, team_id, [e for e in accepted if e not in existing])
    auto_topics = queries.opt_out_topic_ids(conn, team_id)
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    join_lists: list[tuple[str, str]] = []
    subscribe: list[tuple[str, str]] = []
    unsubscribe: list[tuple[str, str]] = []
    for email, row in accepted.items():
        current = existing.get(email)
        if current is None:
            record = _new_contact_row(team_id, email, row.properties, suppressed.get(email, "subscribed"), now)
            new_rows.append(record)
            contact_id = record["id"]
            choices = {**dict.fromkeys(auto_topics, "opt_in"), **row.topics}
            subscribe.extend((contact_id, t) for t, choice in choices.items() if choice == "opt_in")
        else:
            contact_id = current.id
            if data.update_existing:
                merged = {**(current.properties or {}), **row.properties}
                if merged != (current.properties or {}):
                    changed_rows.append({"contact_id": contact_id, "new_properties": merged, "new_updated_at": now})
                subscribe.extend((contact_id, t) for t, choice in row.topics.items() if choice == "opt_in")
                unsubscribe.extend((contact_id, t) for t, choice in row.topics.items() if choice == "opt_out")
        ids[email] = contact_id
        join_lists.extend((contact_id, list_id) for list_id in row.list_ids)

    queries.insert_contacts(conn, new_rows)
    queries.update_contacts(conn, team_id, changed_rows)
    _join_missing(conn, "list", join_lists, fresh={r["id"] for r in new_rows})
    _join_missing(conn, "topic", subscribe, fresh={r["id"] for r in new_rows})
    if unsubscribe:
        queries.delete_pairs(conn, "topic", unsubscribe)
    if new_rows or changed_rows or join_lists:
        queries.mark_counts_stale(conn, team_id)
    created = len(new_rows)
    matched = len(accepted) - created
    updated = matched if data.update_existing else 0
    _audit(conn, actor, team_id, "audience.contacts.imported", f"contacts:{len(accepted)}", now,
           new={"created": created, "existing": matched, "errors": len(errors)})  # fmt: skip
    return wire.BulkImport(
        created=created,
        already_existed=matched - updated,
        updated=updated,
        error_count=len(errors),
        errors=errors,
        contacts=[wire.BulkContactRef(id=ids[e], email=e, created=e not in existing) for e in accepted],
    )


def _join_missing(conn: Connection, kind: str, pairs: list[tuple[str, str]], *, fresh: set[str]) -> None:
    """Insert the pairs not there yet (a contact created in this request has none, so is not looked up)."""
    pairs = list(dict.fromkeys(pairs))
    older = [p for p in pairs if p[0] not in fresh]
    present = queries.existing_pairs(conn, kind, [p[0] for p in older], list({p[1] for p in older})) if older else set()
    queries.insert_pairs(conn, kind, [p for p in pairs if p not in present])
