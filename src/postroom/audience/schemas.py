"""Audience wire types: each request body decodes into one of these Structs and each handler returns one.

A body msgspec cannot decode into its Struct is a 422 naming the field by its dotted path (``contacts.3.email``).
Rows of a bulk create are decoded loosely (``Any``) on purpose: a bad row is skipped and reported, not fatal.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from postroom.core.jsonbody import decode_body
from postroom.core.openapi import Pagination, Timestamp
from postroom.errors import ValidationFailed

T = TypeVar("T")
S = TypeVar("S", bound=Struct)

MAX_NAME = 255
MAX_EMAIL = 255
MAX_PROPERTY_VALUE = 1000
MAX_BULK_ROWS = 1000
MAX_BULK_GROUPS = 50
MAX_SEARCH = 255
DEFAULT_PER_PAGE = 20

ContactStatus = Literal["subscribed", "unsubscribed", "bounced", "complained", "unverified"]
CONTACT_STATUSES: tuple[str, ...] = ("subscribed", "unsubscribed", "bounced", "complained", "unverified")
Subscription = Literal["opt_in", "opt_out"]
Visibility = Literal["private", "public"]
PropertyType = Literal["string", "number", "boolean", "date", "json"]

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
Id = Annotated[str, Meta(min_length=1, max_length=64)]
PropertyName = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern="^[a-z][a-z0-9_]*$")]
FallbackValue = Annotated[str, Meta(max_length=MAX_NAME)]
Description = Annotated[str, Meta(max_length=1000)]
ContactIds = Annotated[list[Id], Meta(min_length=1, max_length=MAX_BULK_ROWS)]
GroupIds = Annotated[list[Id], Meta(min_length=1, max_length=MAX_BULK_GROUPS)]


# -- envelope -------------------------------------------------------------------------------------------------


class Envelope(Struct, Generic[T]):
    """The Lettr success body ``{"message", "data"}``."""

    message: str
    data: T


class Message(Struct):
    message: str


# -- requests -------------------------------------------------------------------------------------------------


class ListInput(Struct):
    """``POST /audience/lists``."""

    name: Name


class ListChanges(Struct):
    """``PATCH /audience/lists/{id}``: an empty body changes nothing."""

    name: Name | UnsetType = UNSET


class ListIdsInput(Struct):
    """``DELETE /audience/lists/bulk``."""

    list_ids: GroupIds


class DoubleOptIn(Struct, rename={"from_": "from"}):
    """Confirmation email for a contact created ``unverified``."""

    from_: Annotated[str, Meta(min_length=1, max_length=MAX_EMAIL)]
    subject: Annotated[str, Meta(min_length=1, max_length=998)]
    template_slug: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
    redirect_url: Annotated[str, Meta(min_length=1, max_length=2048)]
    from_name: Annotated[str, Meta(max_length=MAX_NAME)] | None = None


class ContactInput(Struct):
    """``POST /audience/contacts``; ``properties`` values are checked against each property's type."""

    email: Annotated[str, Meta(max_length=MAX_EMAIL)]
    list_id: Id | None = None
    properties: dict[str, Any] | None = None
    double_opt_in: DoubleOptIn | None = None


class ContactChanges(Struct):
    """``PATCH /audience/contacts/{id}``: ``properties`` is merged, and a null value removes its key."""

    email: Annotated[str, Meta(max_length=MAX_EMAIL)] | UnsetType = UNSET
    status: Literal["subscribed", "unsubscribed"] | UnsetType = UNSET
    properties: dict[str, Any] | UnsetType = UNSET


class TopicChoice(Struct):
    """A batch-wide topic subscription of a bulk create."""

    id: Id
    subscription: Subscription = "opt_in"


class BulkContactsInput(Struct):
    """``POST /audience/contacts/bulk``: exactly one of ``emails`` or ``contacts``; rows are checked one by one."""

    emails: Annotated[list[Any], Meta(min_length=1, max_length=MAX_BULK_ROWS)] | UnsetType = UNSET
    contacts: Annotated[list[Any], Meta(min_length=1, max_length=MAX_BULK_ROWS)] | UnsetType = UNSET
    list_id: Id | None = None
    list_ids: Annotated[list[Id], Meta(max_length=MAX_BULK_GROUPS)] | None = None
    properties: dict[str, Any] | None = None
    topics: Annotated[list[TopicChoice], Meta(max_length=MAX_BULK_GROUPS)] | None = None
    update_existing: bool = False


class ContactListPairs(Struct):
    """Every ``contact_ids`` × ``list_ids`` pair."""

    contact_ids: ContactIds
    list_ids: GroupIds


class ContactTopicPairs(Struct):
    """Every ``contact_ids`` × ``topic_ids`` pair."""

    contact_ids: ContactIds
    topic_ids: GroupIds


class TopicInput(Struct):
    """``POST /audience/topics``; ``default_subscription`` cannot be changed later."""

    name: Name
    description: Description | None = None
    default_subscription: Subscription = "opt_in"
    visibility: Visibility = "private"


class TopicChanges(Struct):
    """``PATCH /audience/topics/{id}``: ``description: null`` clears it."""

    name: Name | UnsetType = UNSET
    description: Description | None | UnsetType = UNSET
    visibility: Visibility | UnsetType = UNSET
    default_subscription: str | None | UnsetType = UNSET


class PropertyInput(Struct):
    """``POST /audience/properties``; ``name`` and ``type`` cannot be changed later."""

    name: PropertyName
    type: PropertyType
    fallback_value: FallbackValue | None = None


class PropertyChanges(Struct):
    """``PATCH /audience/properties/{id}``: only ``fallback_value`` (null clears it); other keys are ignored."""

    fallback_value: FallbackValue | None | UnsetType = UNSET


ConditionValue = str | int | float | bool | None


class ConditionInput(Struct):
    field: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
    operator: Annotated[str, Meta(min_length=1, max_length=64)]
    value: ConditionValue = None


class ConditionGroupInput(Struct):
    conditions: Annotated[list[ConditionInput], Meta(min_length=1, max_length=20)]


class ConditionsInput(Struct):
    """Groups are AND-ed; the conditions inside a group are OR-ed."""

    groups: Annotated[list[ConditionGroupInput], Meta(min_length=1, max_length=20)]


class SegmentInput(Struct):
    """``POST /audience/segments`` (the request says ``conditions.groups``; the response ``condition_groups``)."""

    name: Name
    conditions: ConditionsInput
    list_id: Id | None = None


class SegmentChanges(Struct):
    """``PATCH /audience/segments/{id}``: ``list_id: null`` means every contact of the team."""

    name: Name | UnsetType = UNSET
    conditions: ConditionsInput | UnsetType = UNSET
    list_id: Id | None | UnsetType = UNSET


# -- responses ------------------------------------------------------------------------------------------------


class AudienceList(Struct):
    id: str
    name: str
    contacts_count: int


class ListPage(Struct):
    lists: list[AudienceList]
    pagination: Pagination


class Ref(Struct):
    id: str
    name: str


class Contact(Struct):
    id: str
    email: str
    status: str
    properties: dict[str, str]
    created_at: Timestamp
    lists: list[Ref]
    topics: list[Ref]


class ContactPage(Struct):
    contacts: list[Contact]
    pagination: Pagination


class Topic(Struct):
    id: str
    name: str
    description: str | None
    default_subscription: str
    visibility: str
    contacts_count: int
    created_at: Timestamp | None


class TopicPage(Struct):
    topics: list[Topic]
    pagination: Pagination


class Property(Struct):
    id: str
    name: str
    type: str
    fallback_value: str | None
    created_at: Timestamp


class PropertyPage(Struct):
    properties: list[Property]
    pagination: Pagination


class Condition(Struct):
    field: str
    operator: str
    value: str | None


class ConditionGroup(Struct):
    conditions: list[Condition]


class Segment(Struct):
    id: str
    name: str
    list_id: str | None
    list_name: str | None
    condition_groups: list[ConditionGroup]
    cached_contacts_count: int | None
    created_at: Timestamp


class SegmentPage(Struct):
    segments: list[Segment]
    pagination: Pagination


class BulkDeleted(Struct):
    deleted: int


class BulkContactError(Struct):
    index: int
    email: str | None
    error_code: str
    error: str


class BulkContactRef(Struct):
    id: str
    email: str
    created: bool


class BulkImport(Struct):
    created: int
    already_existed: int
    updated: int
    error_count: int
    errors: list[BulkContactError]
    contacts: list[BulkContactRef]


class ListsAttached(Struct):
    attached: int
    already_attached: int
    total_pairs: int


class ListsDetached(Struct):
    detached: int
    not_present: int
    total_pairs: int


class TopicsSubscribed(Struct):
    subscribed: int
    already_subscribed: int
    total_pairs: int


class TopicsUnsubscribed(Struct):
    unsubscribed: int
    total_pairs: int


# -- decoding -------------------------------------------------------------------------------------------------

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def field_path(path: str) -> str:
    """msgspec's ``.contacts[3].email`` as the dotted key Lettr uses: ``contacts.3.email``."""
    return re.sub(r"\[(\d+)\]", r".\1", path).strip(".")


def _nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or string holding a NUL character (no database text can), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items: Any = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        inner = f"{path}.{key}".strip(".")
        if isinstance(key, str) and "\x00" in key:
            return inner
        found = _nul_path(item, inner)
        if found is not None:
            return found
    return None


def decode(raw: bytes, into: type[S]) -> S:
    """``raw`` (an empty body is ``{}``) decoded into ``into``; a 422 naming the field otherwise. The body passes
    the checks every JSON route shares first (a JSON object, UTF-8, not nested too deep)."""
    body = decode_body(raw)
    path = _nul_path(body)
    if path is not None:
        raise ValidationFailed({path or "body": ["Must not contain NUL characters."]})
    try:
        return msgspec.convert(body, type=into)
    except msgspec.ValidationError as error:
        match = _AT.match(str(error))
        assert match is not None  # the pattern matches every string
        message, path = match.group("message"), field_path(match.group("path") or "")
        missing = _MISSING.match(message)
        if missing:
            key = ".".join(p for p in (path, missing.group("field")) if p)
            raise ValidationFailed({key: [f"The {key} field is required."]}) from None
        if message.startswith("Object contains unknown field"):
            raise ValidationFailed({path or "body": [message]}) from None
        raise ValidationFailed({path or "body": [f"Invalid value: {message}."]}) from None
    except msgspec.DecodeError:
        raise ValidationFailed({"body": ["The request body must be a JSON object."]}) from None
