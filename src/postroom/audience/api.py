"""``/api/audience/*``: lists, contacts, topics, properties and segments, with Lettr's paths, shapes and codes.

Reads need ``audience:read``, changes ``audience:write`` (see ``ROUTE_SCOPES``). Lists of things are paged with
``page`` and ``per_page`` (1–100, default 20). Each handler decodes its body into a Struct, makes one service
call, and returns the Struct that is its response.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from postroom.apikeys.guard import CallerKey, caller_actor
from postroom.apikeys.service import ApiKeyRecord
from postroom.audience import service
from postroom.audience.schemas import (
    DEFAULT_PER_PAGE,
    AudienceList,
    BulkContactsInput,
    BulkDeleted,
    BulkImport,
    Contact,
    ContactChanges,
    ContactInput,
    ContactListPairs,
    ContactPage,
    ContactTopicPairs,
    Envelope,
    ListChanges,
    ListIdsInput,
    ListInput,
    ListPage,
    ListsAttached,
    ListsDetached,
    Message,
    Property,
    PropertyChanges,
    PropertyInput,
    PropertyPage,
    Segment,
    SegmentChanges,
    SegmentInput,
    SegmentPage,
    Topic,
    TopicChanges,
    TopicInput,
    TopicPage,
    TopicsSubscribed,
    TopicsUnsubscribed,
    decode,
)
from postroom.audit.service import Actor
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.core.openapi import documented, request_body
from postroom.core.pagination import PageRequest, parse_page_params

AnyRequest = Request[Any, Any, State]


def _actor(request: AnyRequest, api_key: ApiKeyRecord) -> Actor:
    return caller_actor(request, api_key)


def _id(value: str) -> str:
    """An id from a path or query string as looked up: one with a NUL in it (which no database text column can
    hold) becomes one that cannot exist, so it is "not found" like any other unknown id."""
    return value.replace("\x00", "\ufffd")


def _optional_id(value: str | None) -> str | None:
    return None if value is None else _id(value)


def _page(page: str | None, per_page: str | None) -> PageRequest:
    return parse_page_params(page, per_page, default_per_page=DEFAULT_PER_PAGE)


# -- lists ----------------------------------------------------------------------------------------------------


@get("/audience/lists", responses=documented(200, Envelope[ListPage], errors=(422,)))
async def list_lists(
    state: State, api_key: CallerKey, page: FromQuery[str | None] = None, per_page: FromQuery[str | None] = None
) -> Envelope[ListPage]:
    request = _page(page, per_page)
    data = await state.db.read(lambda conn: service.list_lists(conn, team_id=api_key.team_id, page=request))
    return Envelope("Lists retrieved successfully.", data)


@post(
    "/audience/lists",
    status_code=201,
    responses=documented(201, Envelope[AudienceList], errors=(409, 422)),
    operation_class=request_body(ListInput),
)
async def create_list(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[AudienceList]:
    body, actor = decode(await request.body(), ListInput), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.create_list(conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow())
    )
    return Envelope("List created successfully.", data)


@delete(
    "/audience/lists/bulk",
    status_code=200,
    responses=documented(200, Envelope[BulkDeleted], errors=(404, 422)),
    operation_class=request_body(ListIdsInput),
)
async def delete_lists(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[BulkDeleted]:
    body, actor = decode(await request.body(), ListIdsInput), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.delete_lists(conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow())
    )
    return Envelope("Lists deleted successfully.", data)


@get("/audience/lists/{list_id:str}", responses=documented(200, Envelope[AudienceList], errors=(404,)))
async def get_list(state: State, api_key: CallerKey, list_id: FromPath[str]) -> Envelope[AudienceList]:
    data = await state.db.read(lambda conn: service.get_list(conn, team_id=api_key.team_id, list_id=_id(list_id)))
    return Envelope("List retrieved successfully.", data)


@patch(
    "/audience/lists/{list_id:str}",
    responses=documented(200, Envelope[AudienceList], errors=(404, 409, 422)),
    operation_class=request_body(ListChanges, required=False),
)
async def update_list(
    request: AnyRequest, state: State, api_key: CallerKey, list_id: FromPath[str]
) -> Envelope[AudienceList]:
    body, actor = decode(await request.body(), ListChanges), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.update_list(
            conn, team_id=api_key.team_id, list_id=_id(list_id), changes=body, actor=actor, now=utcnow()
        )
    )
    return Envelope("List updated successfully.", data)


@delete("/audience/lists/{list_id:str}", status_code=204, responses=documented(204, None, errors=(404,)))
async def delete_list(request: AnyRequest, state: State, api_key: CallerKey, list_id: FromPath[str]) -> None:
    actor = _actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_list(conn, team_id=api_key.team_id, list_id=_id(list_id), actor=actor, now=utcnow())
    )


# -- contacts -------------------------------------------------------------------------------------------------


@get("/audience/contacts", responses=documented(200, Envelope[ContactPage], errors=(404, 422)))
async def list_contacts(
    state: State,
    api_key: CallerKey,
    page: FromQuery[str | None] = None,
    per_page: FromQuery[str | None] = None,
    search: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    list_id: FromQuery[str | None] = None,
    segment_id: FromQuery[str | None] = None,
) -> Envelope[ContactPage]:
    request = _page(page, per_page)
    query = service.ContactQuery(
        search=search or None, status=status, list_id=_optional_id(list_id), segment_id=_optional_id(segment_id)
    )
    data = await state.db.read(
        lambda conn: service.list_contacts(conn, team_id=api_key.team_id, query=query, page=request)
    )
    return Envelope("Contacts retrieved successfully.", data)


@post(
    "/audience/contacts",
    status_code=201,
    responses=documented(201, Envelope[Contact], errors=(404, 409, 422, 502)),
    operation_class=request_body(ContactInput),
)
async def create_contact(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[Contact]:
    """With ``double_opt_in`` the contact starts ``unverified`` and its confirmation email is queued in the same
    transaction: 404 ``template_not_found``, 400 for a sender domain that cannot send, 502 ``transmission_failed``
    when nothing could be queued; in each case no contact is created."""
    body, actor = decode(await request.body(), ContactInput), _actor(request, api_key)
    settings: Settings = state.settings
    opt_in = service.OptInSender(
        secret=settings.server_secret,
        mail_hostname=settings.mail_hostname,
        link_base=str(request.base_url).rstrip("/"),
        api_key_id=api_key.id,
    )
    data = await state.db.write(
        lambda conn: service.create_contact(
            conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow(), opt_in=opt_in
        )
    )
    if body.double_opt_in is not None:
        state.wake_worker()
    return Envelope("Contact created successfully.", data)


@post(
    "/audience/contacts/bulk",
    status_code=201,
    responses=documented(201, Envelope[BulkImport], errors=(422,)),
    operation_class=request_body(BulkContactsInput),
)
async def bulk_create_contacts(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[BulkImport]:
    body, actor = decode(await request.body(), BulkContactsInput), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.bulk_create_contacts(conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow())
    )
    return Envelope("Contacts imported successfully.", data)


@post(
    "/audience/contacts/lists/bulk",
    status_code=200,
    responses=documented(200, Envelope[ListsAttached], errors=(404, 422)),
    operation_class=request_body(ContactListPairs),
)
async def bulk_attach_lists(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[ListsAttached]:
    body, actor = decode(await request.body(), ContactListPairs), _actor(request, api_key)
    attached, already, total = await state.db.write(
        lambda conn: service.bulk_join(
            conn, team_id=api_key.team_id, kind="list", contact_ids=body.contact_ids, group_ids=body.list_ids,
            actor=actor, now=utcnow(),
        )
    )  # fmt: skip
    return Envelope("Contacts attached to lists.", ListsAttached(attached, already, total))


@delete(
    "/audience/contacts/lists/bulk",
    status_code=200,
    responses=documented(200, Envelope[ListsDetached], errors=(404, 422)),
    operation_class=request_body(ContactListPairs),
)
async def bulk_detach_lists(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[ListsDetached]:
    body, actor = decode(await request.body(), ContactListPairs), _actor(request, api_key)
    detached, total = await state.db.write(
        lambda conn: service.bulk_leave(
            conn, team_id=api_key.team_id, kind="list", contact_ids=body.contact_ids, group_ids=body.list_ids,
            actor=actor, now=utcnow(),
        )
    )  # fmt: skip
    return Envelope("Contacts detached from lists.", ListsDetached(detached, total - detached, total))


@post(
    "/audience/contacts/topics/bulk",
    status_code=200,
    responses=documented(200, Envelope[TopicsSubscribed], errors=(404, 422)),
    operation_class=request_body(ContactTopicPairs),
)
async def bulk_subscribe_topics(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[TopicsSubscribed]:
    body, actor = decode(await request.body(), ContactTopicPairs), _actor(request, api_key)
    subscribed, already, total = await state.db.write(
        lambda conn: service.bulk_join(
            conn, team_id=api_key.team_id, kind="topic", contact_ids=body.contact_ids, group_ids=body.topic_ids,
            actor=actor, now=utcnow(),
        )
    )  # fmt: skip
    return Envelope("Contacts subscribed to topics.", TopicsSubscribed(subscribed, already, total))


@delete(
    "/audience/contacts/topics/bulk",
    status_code=200,
    responses=documented(200, Envelope[TopicsUnsubscribed], errors=(404, 422)),
    operation_class=request_body(ContactTopicPairs),
)
async def bulk_unsubscribe_topics(
    request: AnyRequest, state: State, api_key: CallerKey
) -> Envelope[TopicsUnsubscribed]:
    body, actor = decode(await request.body(), ContactTopicPairs), _actor(request, api_key)
    unsubscribed, total = await state.db.write(
        lambda conn: service.bulk_leave(
            conn, team_id=api_key.team_id, kind="topic", contact_ids=body.contact_ids, group_ids=body.topic_ids,
            actor=actor, now=utcnow(),
        )
    )  # fmt: skip
    return Envelope("Contacts unsubscribed from topics.", TopicsUnsubscribed(unsubscribed, total))


@get("/audience/contacts/{contact_id:str}", responses=documented(200, Envelope[Contact], errors=(404,)))
async def get_contact(state: State, api_key: CallerKey, contact_id: FromPath[str]) -> Envelope[Contact]:
    data = await state.db.read(
        lambda conn: service.get_contact(conn, team_id=api_key.team_id, contact_id=_id(contact_id))
    )
    return Envelope("Contact retrieved successfully.", data)


@patch(
    "/audience/contacts/{contact_id:str}",
    responses=documented(200, Envelope[Contact], errors=(404, 409, 422)),
    operation_class=request_body(ContactChanges, required=False),
)
async def update_contact(
    request: AnyRequest, state: State, api_key: CallerKey, contact_id: FromPath[str]
) -> Envelope[Contact]:
    body, actor = decode(await request.body(), ContactChanges), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.update_contact(
            conn, team_id=api_key.team_id, contact_id=_id(contact_id), changes=body, actor=actor, now=utcnow()
        )
    )
    return Envelope("Contact updated successfully.", data)


@delete("/audience/contacts/{contact_id:str}", status_code=204, responses=documented(204, None, errors=(404,)))
async def delete_contact(request: AnyRequest, state: State, api_key: CallerKey, contact_id: FromPath[str]) -> None:
    actor = _actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_contact(
            conn, team_id=api_key.team_id, contact_id=_id(contact_id), actor=actor, now=utcnow()
        )
    )


async def _join(
    request: AnyRequest, state: State, api_key: ApiKeyRecord, kind: str, contact_id: str, group_id: str
) -> bool:
    actor = _actor(request, api_key)
    joined: bool = await state.db.write(
        lambda conn: service.join(
            conn, team_id=api_key.team_id, kind=kind, contact_id=_id(contact_id), group_id=_id(group_id), actor=actor,
            now=utcnow(),
        )
    )  # fmt: skip
    return joined


async def _leave(
    request: AnyRequest, state: State, api_key: ApiKeyRecord, kind: str, contact_id: str, group_id: str
) -> None:
    actor = _actor(request, api_key)
    await state.db.write(
        lambda conn: service.leave(
            conn, team_id=api_key.team_id, kind=kind, contact_id=_id(contact_id), group_id=_id(group_id), actor=actor,
            now=utcnow(),
        )
    )  # fmt: skip


@post(
    "/audience/contacts/{contact_id:str}/lists/{list_id:str}",
    responses={**documented(201, Message, errors=(404,)), **documented(200, Message, public=True)},
)
async def add_to_list(
    request: AnyRequest, state: State, api_key: CallerKey, contact_id: FromPath[str], list_id: FromPath[str]
) -> Response[Message]:
    """201 when the contact was put on the list, 200 when it was already on it."""
    joined = await _join(request, state, api_key, "list", contact_id, list_id)
    return Response(Message("Contact attached to list."), status_code=201 if joined else 200)


@delete(
    "/audience/contacts/{contact_id:str}/lists/{list_id:str}",
    status_code=204,
    responses=documented(204, None, errors=(404,)),
)
async def remove_from_list(
    request: AnyRequest, state: State, api_key: CallerKey, contact_id: FromPath[str], list_id: FromPath[str]
) -> None:
    await _leave(request, state, api_key, "list", contact_id, list_id)


@post(
    "/audience/contacts/{contact_id:str}/topics/{topic_id:str}",
    responses={**documented(201, Message, errors=(404,)), **documented(200, Message, public=True)},
)
async def subscribe_to_topic(
    request: AnyRequest, state: State, api_key: CallerKey, contact_id: FromPath[str], topic_id: FromPath[str]
) -> Response[Message]:
    """201 when the contact was subscribed, 200 when it already was."""
    joined = await _join(request, state, api_key, "topic", contact_id, topic_id)
    return Response(Message("Contact subscribed to topic."), status_code=201 if joined else 200)


@delete(
    "/audience/contacts/{contact_id:str}/topics/{topic_id:str}",
    status_code=204,
    responses=documented(204, None, errors=(404,)),
)
async def unsubscribe_from_topic(
    request: AnyRequest, state: State, api_key: CallerKey, contact_id: FromPath[str], topic_id: FromPath[str]
) -> None:
    await _leave(request, state, api_key, "topic", contact_id, topic_id)


# -- topics ---------------------------------------------------------------------------------------------------


@get("/audience/topics", responses=documented(200, Envelope[TopicPage], errors=(422,)))
async def list_topics(
    state: State, api_key: CallerKey, page: FromQuery[str | None] = None, per_page: FromQuery[str | None] = None
) -> Envelope[TopicPage]:
    request = _page(page, per_page)
    data = await state.db.read(lambda conn: service.list_topics(conn, team_id=api_key.team_id, page=request))
    return Envelope("Topics retrieved successfully.", data)


@post(
    "/audience/topics",
    status_code=201,
    responses=documented(201, Envelope[Topic], errors=(422,)),
    operation_class=request_body(TopicInput),
)
async def create_topic(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[Topic]:
    body, actor = decode(await request.body(), TopicInput), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.create_topic(conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow())
    )
    return Envelope("Topic created successfully.", data)


@get("/audience/topics/{topic_id:str}", responses=documented(200, Envelope[Topic], errors=(404,)))
async def get_topic(state: State, api_key: CallerKey, topic_id: FromPath[str]) -> Envelope[Topic]:
    data = await state.db.read(lambda conn: service.get_topic(conn, team_id=api_key.team_id, topic_id=_id(topic_id)))
    return Envelope("Topic retrieved successfully.", data)


@patch(
    "/audience/topics/{topic_id:str}",
    responses=documented(200, Envelope[Topic], errors=(404, 422)),
    operation_class=request_body(TopicChanges, required=False),
)
async def update_topic(
    request: AnyRequest, state: State, api_key: CallerKey, topic_id: FromPath[str]
) -> Envelope[Topic]:
    body, actor = decode(await request.body(), TopicChanges), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.update_topic(
            conn, team_id=api_key.team_id, topic_id=_id(topic_id), changes=body, actor=actor, now=utcnow()
        )
    )
    return Envelope("Topic updated successfully.", data)


@delete("/audience/topics/{topic_id:str}", status_code=204, responses=documented(204, None, errors=(404,)))
async def delete_topic(request: AnyRequest, state: State, api_key: CallerKey, topic_id: FromPath[str]) -> None:
    actor = _actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_topic(
            conn, team_id=api_key.team_id, topic_id=_id(topic_id), actor=actor, now=utcnow()
        )
    )


# -- properties -----------------------------------------------------------------------------------------------


@get("/audience/properties", responses=documented(200, Envelope[PropertyPage], errors=(422,)))
async def list_properties(
    state: State, api_key: CallerKey, page: FromQuery[str | None] = None, per_page: FromQuery[str | None] = None
) -> Envelope[PropertyPage]:
    request = _page(page, per_page)
    data = await state.db.read(lambda conn: service.list_properties(conn, team_id=api_key.team_id, page=request))
    return Envelope("Properties retrieved successfully.", data)


@post(
    "/audience/properties",
    status_code=201,
    responses=documented(201, Envelope[Property], errors=(409, 422)),
    operation_class=request_body(PropertyInput),
)
async def create_property(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[Property]:
    body, actor = decode(await request.body(), PropertyInput), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.create_property(conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow())
    )
    return Envelope("Property created successfully.", data)


@get("/audience/properties/{property_id:str}", responses=documented(200, Envelope[Property], errors=(404,)))
async def get_property(state: State, api_key: CallerKey, property_id: FromPath[str]) -> Envelope[Property]:
    data = await state.db.read(
        lambda conn: service.get_property(conn, team_id=api_key.team_id, property_id=_id(property_id))
    )
    return Envelope("Property retrieved successfully.", data)


@patch(
    "/audience/properties/{property_id:str}",
    responses=documented(200, Envelope[Property], errors=(404, 422)),
    operation_class=request_body(PropertyChanges, required=False),
)
async def update_property(
    request: AnyRequest, state: State, api_key: CallerKey, property_id: FromPath[str]
) -> Envelope[Property]:
    body, actor = decode(await request.body(), PropertyChanges), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.update_property(
            conn, team_id=api_key.team_id, property_id=_id(property_id), changes=body, actor=actor, now=utcnow()
        )
    )
    return Envelope("Property updated successfully.", data)


@delete("/audience/properties/{property_id:str}", status_code=204, responses=documented(204, None, errors=(404,)))
async def delete_property(request: AnyRequest, state: State, api_key: CallerKey, property_id: FromPath[str]) -> None:
    actor = _actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_property(
            conn, team_id=api_key.team_id, property_id=_id(property_id), actor=actor, now=utcnow()
        )
    )


# -- segments -------------------------------------------------------------------------------------------------
# Reading a segment may refresh its cached count, so even the GETs run as writes.


@get("/audience/segments", responses=documented(200, Envelope[SegmentPage], errors=(404, 422)))
async def list_segments(
    state: State,
    api_key: CallerKey,
    page: FromQuery[str | None] = None,
    per_page: FromQuery[str | None] = None,
    list_id: FromQuery[str | None] = None,
) -> Envelope[SegmentPage]:
    request = _page(page, per_page)
    data = await state.db.write(
        lambda conn: service.list_segments(conn, team_id=api_key.team_id, list_id=_optional_id(list_id), page=request)
    )
    return Envelope("Segments retrieved successfully.", data)


@post(
    "/audience/segments",
    status_code=201,
    responses=documented(201, Envelope[Segment], errors=(404, 422)),
    operation_class=request_body(SegmentInput),
)
async def create_segment(request: AnyRequest, state: State, api_key: CallerKey) -> Envelope[Segment]:
    body, actor = decode(await request.body(), SegmentInput), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.create_segment(conn, team_id=api_key.team_id, data=body, actor=actor, now=utcnow())
    )
    return Envelope("Segment created successfully.", data)


@get("/audience/segments/{segment_id:str}", responses=documented(200, Envelope[Segment], errors=(404,)))
async def get_segment(state: State, api_key: CallerKey, segment_id: FromPath[str]) -> Envelope[Segment]:
    data = await state.db.write(
        lambda conn: service.get_segment(conn, team_id=api_key.team_id, segment_id=_id(segment_id))
    )
    return Envelope("Segment retrieved successfully.", data)


@patch(
    "/audience/segments/{segment_id:str}",
    responses=documented(200, Envelope[Segment], errors=(404, 422)),
    operation_class=request_body(SegmentChanges, required=False),
)
async def update_segment(
    request: AnyRequest, state: State, api_key: CallerKey, segment_id: FromPath[str]
) -> Envelope[Segment]:
    body, actor = decode(await request.body(), SegmentChanges), _actor(request, api_key)
    data = await state.db.write(
        lambda conn: service.update_segment(
            conn, team_id=api_key.team_id, segment_id=_id(segment_id), changes=body, actor=actor, now=utcnow()
        )
    )
    return Envelope("Segment updated successfully.", data)


@delete("/audience/segments/{segment_id:str}", status_code=204, responses=documented(204, None, errors=(404,)))
async def delete_segment(request: AnyRequest, state: State, api_key: CallerKey, segment_id: FromPath[str]) -> None:
    actor = _actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_segment(
            conn, team_id=api_key.team_id, segment_id=_id(segment_id), actor=actor, now=utcnow()
        )
    )


HANDLERS: list[Any] = [
    list_lists, create_list, delete_lists, get_list, update_list, delete_list,
    list_contacts, create_contact, bulk_create_contacts, bulk_attach_lists, bulk_detach_lists,
    bulk_subscribe_topics, bulk_unsubscribe_topics, get_contact, update_contact, delete_contact,
    add_to_list, remove_from_list, subscribe_to_topic, unsubscribe_from_topic,
    list_topics, create_topic, get_topic, update_topic, delete_topic,
    list_properties, create_property, get_property, update_property, delete_property,
    list_segments, create_segment, get_segment, update_segment, delete_segment,
]  # fmt: skip
