"""Every audience SQL statement. Each function takes the team first and reads or changes only that team's rows;
membership rows are only ever written for a contact and a list or topic already found in the team."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from postroom.models import (
    audience_lists,
    audience_properties,
    contact_lists,
    contact_topics,
    contacts,
    segments,
    topics,
)

CHUNK = 500
"""IN lists are split to stay far below SQLite's and asyncpg's parameter limits."""

NAME_FIELDS = ("name", "first_name", "last_name")
"""Properties ``search`` looks in besides the email address."""


def chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _total(conn: Connection, query: Select[Any]) -> int:
    """How many rows ``query`` matches: its FROM and WHERE with ``count(*)`` for columns."""
    counted = query.with_only_columns(func.count(), maintain_column_froms=True).order_by(None)
    return int(conn.execute(counted).scalar_one())


def like_pattern(text: str, *, prefix: bool = True, suffix: bool = True) -> str:
    """``text`` as a LIKE pattern (escape character ``\\``) matching it literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{'%' if prefix else ''}{escaped}{'%' if suffix else ''}"


# -- lists ----------------------------------------------------------------------------------------------------

_LIST_COUNT = (
    select(func.count())
    .where(contact_lists.c.list_id == audience_lists.c.id)
    .correlate(audience_lists)
    .scalar_subquery()
    .label("contacts_count")
)
_LIST_COLUMNS = (audience_lists.c.id, audience_lists.c.name, _LIST_COUNT)


def insert_list(conn: Connection, team_id: int, list_id: str, name: str, now: datetime) -> None:
    conn.execute(audience_lists.insert().values(id=list_id, team_id=team_id, name=name, created_at=now))


def list_row(conn: Connection, team_id: int, list_id: str) -> Row[Any] | None:
    query: Select[Any] = select(*_LIST_COLUMNS).where(
        audience_lists.c.team_id == team_id, audience_lists.c.id == list_id
    )
    return conn.execute(query).first()


def lists_page(conn: Connection, team_id: int, offset: int, limit: int) -> tuple[Sequence[Row[Any]], int]:
    query: Select[Any] = select(*_LIST_COLUMNS).where(audience_lists.c.team_id == team_id).order_by(audience_lists.c.id)
    return conn.execute(query.offset(offset).limit(limit)).fetchall(), _total(conn, query)


def list_named(conn: Connection, team_id: int, name: str) -> str | None:
    query = select(audience_lists.c.id).where(audience_lists.c.team_id == team_id, audience_lists.c.name == name)
    return conn.execute(query).scalar()


def rename_list(conn: Connection, team_id: int, list_id: str, name: str) -> None:
    conn.execute(
        update(audience_lists)
        .where(audience_lists.c.team_id == team_id, audience_lists.c.id == list_id)
        .values(name=name)
    )


def delete_lists(conn: Connection, team_id: int, list_ids: Sequence[str]) -> int:
    result = conn.execute(
        delete(audience_lists).where(audience_lists.c.team_id == team_id, audience_lists.c.id.in_(list_ids))
    )
    return int(result.rowcount)


def found_list_ids(conn: Connection, team_id: int, list_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(list(list_ids)):
        query = select(audience_lists.c.id).where(audience_lists.c.team_id == team_id, audience_lists.c.id.in_(chunk))
        found.update(conn.execute(query).scalars())
    return found


# -- contacts -------------------------------------------------------------------------------------------------


def contact_row(conn: Connection, team_id: int, contact_id: str) -> Row[Any] | None:
    query = select(contacts).where(contacts.c.team_id == team_id, contacts.c.id == contact_id)
    return conn.execute(query).first()


def contact_id_for_email(conn: Connection, team_id: int, email: str) -> str | None:
    query = select(contacts.c.id).where(contacts.c.team_id == team_id, contacts.c.email == email)
    return conn.execute(query).scalar()


def contacts_by_email(conn: Connection, team_id: int, emails: Sequence[str]) -> dict[str, Row[Any]]:
    found: dict[str, Row[Any]] = {}
    for chunk in chunks(list(emails)):
        query = select(contacts).where(contacts.c.team_id == team_id, contacts.c.email.in_(chunk))
        found.update((row.email, row) for row in conn.execute(query))
    return found


def found_contact_ids(conn: Connection, team_id: int, contact_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(list(contact_ids)):
        query = select(contacts.c.id).where(contacts.c.team_id == team_id, contacts.c.id.in_(chunk))
        found.update(conn.execute(query).scalars())
    return found


def insert_contacts(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows carry their ``team_id``; the caller built them for one team."""
    if rows:
        conn.execute(contacts.insert(), list(rows))


def update_contact(conn: Connection, team_id: int, contact_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(contacts).where(contacts.c.team_id == team_id, contacts.c.id == contact_id).values(**values))


def update_contacts(conn: Connection, team_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Several contacts' ``properties`` and ``updated_at`` in one executemany (``rows`` hold ``contact_id``)."""
    if rows:
        statement = (
            update(contacts)
            .where(contacts.c.team_id == team_id, contacts.c.id == bindparam("contact_id"))
            .values(properties=bindparam("new_properties"), updated_at=bindparam("new_updated_at"))
        )
        conn.execute(statement, list(rows))


def delete_contact(conn: Connection, team_id: int, contact_id: str) -> int:
    result = conn.execute(delete(contacts).where(contacts.c.team_id == team_id, contacts.c.id == contact_id))
    return int(result.rowcount)


def contacts_query(
    team_id: int,
    *,
    list_id: str | None = None,
    status: str | None = None,
    search: str | None = None,
    segment: ColumnElement[bool] | None = None,
) -> Select[Any]:
    """The team's contacts matching the filters, newest first.

    With ``list_id`` the list's membership rows drive the query (the team is checked on the list, whose members
    are always the team's contacts), so its cost follows the list's size, not the audience's. Otherwise a
    ``status`` runs on the (team, status, id) index and the rest on (team, id).
    """
    terms: list[ColumnElement[bool]] = []
    if status is not None:
        terms.append(contacts.c.status == status)
    if search:
        pattern = like_pattern(search.lower())
        names = [func.lower(contacts.c.properties[name].as_string()).like(pattern, escape="\\") for name in NAME_FIELDS]
        terms.append(or_(contacts.c.email.like(pattern, escape="\\"), *names))
    if segment is not None:
        terms.append(segment)
    if list_id is None:
        return select(contacts).where(contacts.c.team_id == team_id, *terms).order_by(contacts.c.id.desc())
    owned_list = and_(audience_lists.c.id == contact_lists.c.list_id, audience_lists.c.team_id == team_id)
    members = contact_lists.join(audience_lists, owned_list).join(contacts, contacts.c.id == contact_lists.c.contact_id)
    return (
        select(contacts)
        .select_from(members)
        .where(contact_lists.c.list_id == list_id, *terms)
        .order_by(contact_lists.c.contact_id.desc())
    )


def contacts_page(conn: Connection, query: Select[Any], offset: int, limit: int) -> tuple[Sequence[Row[Any]], int]:
    """One page of ``contacts_query`` and how many it matches in all."""
    return conn.execute(query.offset(offset).limit(limit)).fetchall(), _total(conn, query)


def count_contacts(conn: Connection, query: Select[Any]) -> int:
    return _total(conn, query)


def in_list(list_id: str) -> ColumnElement[bool]:
    """Contacts that belong to ``list_id``."""
    return (
        select(contact_lists.c.contact_id)
        .where(contact_lists.c.list_id == list_id, contact_lists.c.contact_id == contacts.c.id)
        .exists()
    )


def refs_of(
    conn: Connection, contact_ids: Sequence[str]
) -> tuple[dict[str, list[Row[Any]]], dict[str, list[Row[Any]]]]:
    """Each contact's lists and topics as ``(id, name)`` rows, by contact id, in name order."""
    lists: dict[str, list[Row[Any]]] = {}
    subscribed: dict[str, list[Row[Any]]] = {}
    for chunk in chunks(list(contact_ids)):
        list_query: Select[Any] = (
            select(contact_lists.c.contact_id, audience_lists.c.id, audience_lists.c.name)
            .join(audience_lists, audience_lists.c.id == contact_lists.c.list_id)
            .where(contact_lists.c.contact_id.in_(chunk))
            .order_by(audience_lists.c.name, audience_lists.c.id)
        )
        for row in conn.execute(list_query):
            lists.setdefault(row.contact_id, []).append(row)
        topic_query: Select[Any] = (
            select(contact_topics.c.contact_id, topics.c.id, topics.c.name)
            .join(topics, topics.c.id == contact_topics.c.topic_id)
            .where(contact_topics.c.contact_id.in_(chunk))
            .order_by(topics.c.name, topics.c.id)
        )
        for row in conn.execute(topic_query):
            subscribed.setdefault(row.contact_id, []).append(row)
    return lists, subscribed


# -- memberships (lists and topics alike) ---------------------------------------------------------------------

_MEMBERSHIP = {"list": (contact_lists, contact_lists.c.list_id), "topic": (contact_topics, contact_topics.c.topic_id)}


def existing_pairs(
    conn: Connection, kind: str, contact_ids: Sequence[str], group_ids: Sequence[str]
) -> set[tuple[str, str]]:
    """Which (contact, list or topic) pairs exist already."""
    table, group = _MEMBERSHIP[kind]
    found: set[tuple[str, str]] = set()
    for chunk in chunks(list(contact_ids)):
        query = select(table.c.contact_id, group).where(table.c.contact_id.in_(chunk), group.in_(list(group_ids)))
        found.update((row[0], row[1]) for row in conn.execute(query))
    return found


def insert_pairs(conn: Connection, kind: str, pairs: Iterable[tuple[str, str]]) -> None:
    table, group = _MEMBERSHIP[kind]
    rows = [{"contact_id": contact_id, group.name: group_id} for contact_id, group_id in pairs]
    if rows:
        conn.execute(table.insert(), rows)


def delete_pairs(conn: Connection, kind: str, pairs: Sequence[tuple[str, str]]) -> int:
    table, group = _MEMBERSHIP[kind]
    removed = 0
    for chunk in chunks(list(pairs)):
        result = conn.execute(delete(table).where(tuple_(table.c.contact_id, group).in_(list(chunk))))
        removed += int(result.rowcount)
    return removed


# -- topics ---------------------------------------------------------------------------------------------------

_TOPIC_COUNT = (
    select(func.count())
    .where(contact_topics.c.topic_id == topics.c.id)
    .correlate(topics)
    .scalar_subquery()
    .label("contacts_count")
)


def insert_topic(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(topics.insert().values(**values))


def topic_row(conn: Connection, team_id: int, topic_id: str) -> Row[Any] | None:
    query = select(topics, _TOPIC_COUNT).where(topics.c.team_id == team_id, topics.c.id == topic_id)
    return conn.execute(query).first()


def topics_page(conn: Connection, team_id: int, offset: int, limit: int) -> tuple[Sequence[Row[Any]], int]:
    query = select(topics, _TOPIC_COUNT).where(topics.c.team_id == team_id).order_by(topics.c.id)
    return conn.execute(query.offset(offset).limit(limit)).fetchall(), _total(conn, query)


def update_topic(conn: Connection, team_id: int, topic_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(topics).where(topics.c.team_id == team_id, topics.c.id == topic_id).values(**values))


def delete_topic(conn: Connection, team_id: int, topic_id: str) -> int:
    return int(conn.execute(delete(topics).where(topics.c.team_id == team_id, topics.c.id == topic_id)).rowcount)


def found_topic_ids(conn: Connection, team_id: int, topic_ids: Sequence[str]) -> set[str]:
    query = select(topics.c.id).where(topics.c.team_id == team_id, topics.c.id.in_(list(topic_ids)))
    return set(conn.execute(query).scalars())


def opt_out_topic_ids(conn: Connection, team_id: int) -> list[str]:
    """Topics every new contact is subscribed to."""
    query = select(topics.c.id).where(topics.c.team_id == team_id, topics.c.default_subscription == "opt_out")
    return list(conn.execute(query).scalars())


# -- properties -----------------------------------------------------------------------------------------------


def insert_property(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(audience_properties.insert().values(**values))


def property_row(conn: Connection, team_id: int, property_id: str) -> Row[Any] | None:
    query = select(audience_properties).where(
        audience_properties.c.team_id == team_id, audience_properties.c.id == property_id
    )
    return conn.execute(query).first()


def properties_by_name(conn: Connection, team_id: int) -> dict[str, Row[Any]]:
    query = select(audience_properties).where(audience_properties.c.team_id == team_id)
    return {row.name: row for row in conn.execute(query)}


def properties_page(conn: Connection, team_id: int, offset: int, limit: int) -> tuple[Sequence[Row[Any]], int]:
    query = (
        select(audience_properties).where(audience_properties.c.team_id == team_id).order_by(audience_properties.c.id)
    )
    return conn.execute(query.offset(offset).limit(limit)).fetchall(), _total(conn, query)


def update_property(conn: Connection, team_id: int, property_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(
        update(audience_properties)
        .where(audience_properties.c.team_id == team_id, audience_properties.c.id == property_id)
        .values(**values)
    )


def delete_property(conn: Connection, team_id: int, property_id: str) -> int:
    result = conn.execute(
        delete(audience_properties).where(
            audience_properties.c.team_id == team_id, audience_properties.c.id == property_id
        )
    )
    return int(result.rowcount)


def strip_property(conn: Connection, team_id: int, name: str) -> None:
    """Remove ``name`` from every contact of the team that has it (so a later property of that name starts empty)."""
    has_it = contacts.c.properties[name].as_string().is_not(None)
    if conn.dialect.name == "postgresql":
        stripped: Any = cast(cast(contacts.c.properties, JSONB).op("-")(name), JSON)
    else:
        stripped = func.json_remove(contacts.c.properties, f'$."{name}"')
    conn.execute(update(contacts).where(contacts.c.team_id == team_id, has_it).values(properties=stripped))


# -- segments -------------------------------------------------------------------------------------------------

_SEGMENT_COLUMNS = (*segments.c, audience_lists.c.name.label("list_name"))
_SEGMENT_FROM = segments.outerjoin(audience_lists, audience_lists.c.id == segments.c.list_id)


def insert_segment(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(segments.insert().values(**values))


def segment_row(conn: Connection, team_id: int, segment_id: str) -> Row[Any] | None:
    query = (
        select(*_SEGMENT_COLUMNS)
        .select_from(_SEGMENT_FROM)
        .where(segments.c.team_id == team_id, segments.c.id == segment_id)
    )
    return conn.execute(query).first()


def segments_page(
    conn: Connection, team_id: int, list_id: str | None, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    query = select(*_SEGMENT_COLUMNS).select_from(_SEGMENT_FROM).where(segments.c.team_id == team_id)
    if list_id is not None:
        query = query.where(segments.c.list_id == list_id)
    query = query.order_by(segments.c.id)
    return conn.execute(query.offset(offset).limit(limit)).fetchall(), _total(conn, query)


def update_segment(conn: Connection, team_id: int, segment_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(segments).where(segments.c.team_id == team_id, segments.c.id == segment_id).values(**values))


def delete_segment(conn: Connection, team_id: int, segment_id: str) -> int:
    return int(
        conn.execute(delete(segments).where(segments.c.team_id == team_id, segments.c.id == segment_id)).rowcount
    )


def mark_counts_stale(conn: Connection, team_id: int) -> None:
    """The team's contacts changed: every cached segment count is to be recomputed before it is shown."""
    conn.execute(
        update(segments)
        .where(segments.c.team_id == team_id, segments.c.count_stale == false())
        .values(count_stale=True)
    )
