"""Wire shapes for webhooks: event names, request bodies, the Webhook object, deliveries, and the payload we POST.

Request bodies are read by hand rather than through msgspec Structs: the update is partial (absent ≠ given),
``target`` is a deprecated alias of ``url``, and every problem must come back as a 422 naming its field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy import Row

from postroom.core.clock import iso_resource
from postroom.core.openapi import Pagination, Timestamp
from postroom.errors import ValidationFailed
from postroom.messages.events import event_body
from postroom.webhooks.ssrf import Target, parse_target

# -- event names ---------------------------------------------------------------------------------------------

EVENT_NAMES: Final = (
    "message.injection", "message.delivery", "message.bounce", "message.delay", "message.out_of_band",
    "message.spam_complaint", "message.policy_rejection",
    "engagement.click", "engagement.open", "engagement.initial_open", "engagement.amp_click",
    "engagement.amp_open", "engagement.amp_initial_open",
    "generation.generation_failure", "generation.generation_rejection",
    "unsubscribe.list_unsubscribe", "unsubscribe.link_unsubscribe",
    "relay.relay_injection", "relay.relay_rejection", "relay.relay_delivery", "relay.relay_tempfail",
    "relay.relay_permfail",
)  # fmt: skip
"""The 22 canonical names."""

CANONICAL_BY_TYPE: Final = {name.split(".", 1)[1]: name for name in EVENT_NAMES}
"""An event's ``type`` (``delivery``) → its canonical name (``message.delivery``)."""

PAYLOAD_CLASS: Final = {
    "message": "message_event",
    "engagement": "track_event",
    "generation": "gen_event",
    "unsubscribe": "unsubscribe_event",
    "relay": "relay_event",
}
"""SparkPost's wrapper key for each event class: ``{"msys": {"message_event": {...}}}``."""


def canonical_event_name(name: str) -> str | None:
    """``delivery``, ``message.delivery`` and the legacy ``engagament.click`` → canonical; None when unknown."""
    text = name.strip().lower()
    if text.startswith("engagament."):
        text = "engagement." + text.split(".", 1)[1]
    if text in EVENT_NAMES:
        return text
    return CANONICAL_BY_TYPE.get(text)


def canonical_for_type(event_type: str) -> str:
    """The canonical name of a recorded event type (every type Postroom records has one)."""
    return CANONICAL_BY_TYPE.get(event_type, f"message.{event_type}")


# -- request bodies --------------------------------------------------------------------------------------------

AUTH_TYPES: Final = ("none", "basic", "oauth2")
AUTH_FIELDS: Final = {
    "basic": ("auth_username", "auth_password"),
    "oauth2": ("oauth_client_id", "oauth_client_secret", "oauth_token_url"),
}
CREDENTIAL_FIELDS: Final = (
    "auth_username",
    "auth_password",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_token_url",
)
MAX_NAME = 255
MAX_URL = 2048
MAX_CREDENTIAL = 2048
MAX_OVERLAP_HOURS = 7 * 24


class FieldErrors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


@dataclass(frozen=True, slots=True)
class WebhookInput:
    """A validated ``POST /api/webhooks`` body."""

    name: str
    target: Target
    auth_type: str
    credentials: dict[str, str] | None
    event_types: list[str] | None


@dataclass(slots=True)
class WebhookChanges:
    """A validated ``PUT``/``PATCH`` body: only what was given is set."""

    name: str | None = None
    target: Target | None = None
    auth_type: str | None = None
    credentials: dict[str, str] = field(default_factory=dict)
    event_types_given: bool = False
    event_types: list[str] | None = None
    enabled: bool | None = None


def _string(body: dict[str, Any], key: str, errors: FieldErrors, *, required: bool, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            errors.add(key, f"The {key} field is required.")
        return None
    if not isinstance(value, str):
        errors.add(key, f"The {key} must be a string.")
        return None
    value = value.strip()
    if not value:
        if required:
            errors.add(key, f"The {key} field is required.")
        return None
    if len(value) > limit:
        errors.add(key, f"The {key} must not be greater than {limit} characters.")
        return None
    if any(ch in value for ch in "\r\n\x00"):
        errors.add(key, f"The {key} must not contain line breaks or NUL characters.")
        return None
    return value


def _url(body: dict[str, Any], key: str, errors: FieldErrors, *, required: bool) -> Target | None:
    text = _string(body, key, errors, required=required, limit=MAX_URL)
    if text is None:
        return None
    try:
        return parse_target(text)
    except ValueError as exc:
        errors.add(key, str(exc).replace("The url", f"The {key}"))
        return None


def _events(value: Any, errors: FieldErrors) -> list[str] | None:
    if not isinstance(value, list) or not value:
        errors.add("events", "The events field must be a list of at least one event type.")
        return None
    names: list[str] = []
    for index, item in enumerate(value):
        name = canonical_event_name(item) if isinstance(item, str) else None
        if name is None:
            errors.add(f"events.{index}", f"The selected events.{index} is invalid.")
        elif name not in names:
            names.append(name)
    return names


def _auth_type(body: dict[str, Any], errors: FieldErrors, *, required: bool) -> str | None:
    value = body.get("auth_type")
    if value is None:
        if required:
            errors.add("auth_type", "The auth_type field is required.")
        return None
    if value not in AUTH_TYPES:
        errors.add("auth_type", "The auth_type must be one of: none, basic, oauth2.")
        return None
    return str(value)


def _credential_fields(body: dict[str, Any], errors: FieldErrors) -> dict[str, str]:
    given: dict[str, str] = {}
    for key in CREDENTIAL_FIELDS:
        if key == "oauth_token_url":
            if body.get(key) is not None and _url(body, key, errors, required=False) is not None:
                given[key] = str(body[key]).strip()
            continue
        value = _string(body, key, errors, required=False, limit=MAX_CREDENTIAL)
        if value is not None:
            given[key] = value
    return given


def complete_credentials(auth_type: str, fields: dict[str, str], errors: FieldErrors) -> dict[str, str] | None:
    """The credentials ``auth_type`` needs, from ``fields``; each missing one is a 422 naming it."""
    if auth_type == "none":
        return None
    needed = AUTH_FIELDS[auth_type]
    for key in needed:
        if key not in fields:
            errors.add(key, f"The {key} field is required when auth_type is {auth_type}.")
    return {key: fields[key] for key in needed if key in fields}


def parse_create(body: dict[str, Any]) -> WebhookInput:
    errors = FieldErrors()
    name = _string(body, "name", errors, required=True, limit=MAX_NAME)
    if body.get("url") is None and body.get("target") is not None:
        target = _url(body, "target", errors, required=True)
    else:
        target = _url(body, "url", errors, required=True)
    auth_type = _auth_type(body, errors, required=True)
    fields = _credential_fields(body, errors)
    credentials = complete_credentials(auth_type, fields, errors) if auth_type else None
    mode = body.get("events_mode")
    event_types: list[str] | None = None
    if mode is None:
        errors.add("events_mode", "The events_mode field is required.")
    elif mode not in ("all", "selected"):
        errors.add("events_mode", "The events_mode must be all or selected.")
    elif mode == "selected":
        if body.get("events") is None:
            errors.add("events", "The events field is required when events_mode is selected.")
        else:
            event_types = _events(body["events"], errors)
    errors.raise_if_any()
    assert name is not None and target is not None and auth_type is not None
    return WebhookInput(name=name, target=target, auth_type=auth_type, credentials=credentials, event_types=event_types)


def parse_update(body: dict[str, Any]) -> WebhookChanges:
    errors = FieldErrors()
    changes = WebhookChanges()
    changes.name = _string(body, "name", errors, required=False, limit=MAX_NAME) if "name" in body else None
    url, alias = body.get("url"), body.get("target")
    if url is not None and alias is not None and url != alias:
        errors.add("url", "Give either url or target (deprecated), not both.")
    elif url is not None:
        changes.target = _url(body, "url", errors, required=True)
    elif alias is not None:
        changes.target = _url(body, "target", errors, required=True)
    changes.auth_type = _auth_type(body, errors, required=False)
    changes.credentials = _credential_fields(body, errors)
    mode = body.get("events_mode")
    if mode is not None and mode not in ("all", "selected"):
        errors.add("events_mode", "The events_mode must be all or selected.")
    if mode == "all":
        changes.event_types_given, changes.event_types = True, None
    elif body.get("events") is not None:
        changes.event_types_given, changes.event_types = True, _events(body["events"], errors)
    elif mode == "selected":
        errors.add("events", "The events field is required when events_mode is selected.")
    for key in ("active", "enabled"):
        if body.get(key) is not None:
            if not isinstance(body[key], bool):
                errors.add(key, f"The {key} field must be true or false.")
            else:
                changes.enabled = body[key]
    errors.raise_if_any()
    return changes


@dataclass(frozen=True, slots=True)
class RotationRequest:
    overlap_hours: int
    force: bool


def parse_rotation(body: dict[str, Any]) -> RotationRequest:
    """``{"overlap_hours": 0–168 (default 24), "force": false}``."""
    errors = FieldErrors()
    overlap = body.get("overlap_hours", 24)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= MAX_OVERLAP_HOURS:
        errors.add("overlap_hours", f"The overlap_hours must be an integer from 0 to {MAX_OVERLAP_HOURS}.")
        overlap = 24
    force = body.get("force", False)
    if not isinstance(force, bool):
        errors.add("force", "The force field must be true or false.")
        force = False
    errors.raise_if_any()
    return RotationRequest(overlap_hours=overlap, force=force)


# -- response bodies -----------------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return iso_resource(moment) if moment is not None else None


def webhook_body(row: Row[Any]) -> dict[str, Any]:
    """The Lettr Webhook object, plus Postroom's own fields; never a secret or a credential."""
    return {
        "id": row.id,
        "name": row.name,
        "url": row.url,
        "enabled": bool(row.enabled),
        "event_types": msgspec.json.decode(row.event_types) if row.event_types is not None else None,
        "auth_type": row.auth_type,
        "has_auth_credentials": row.auth_credentials is not None,
        "last_successful_at": _when(row.last_successful_at),
        "last_failure_at": _when(row.last_failure_at),
        "last_status": row.last_status,
        "disabled_reason": row.disabled_reason,
        "secret_rotation_ends_at": _when(row.previous_secret_expires_at),
        "created_at": iso_resource(row.created_at),
        "updated_at": iso_resource(row.updated_at),
    }


def attempt_body(row: Row[Any]) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "trigger": row.trigger,
        "started_at": iso_resource(row.started_at),
        "success": bool(row.success),
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "response_excerpt": row.response_excerpt,
        "error": row.error,
    }


def delivery_body(batch: Row[Any], attempts: Sequence[Row[Any]] = ()) -> dict[str, Any]:
    return {
        "id": batch.id,
        "webhook_id": batch.webhook_id,
        "status": batch.status,
        "event_count": batch.event_count,
        "attempts": batch.attempts,
        "next_attempt_at": _when(batch.next_attempt_at) if batch.status in ("pending", "retrying") else None,
        "last_status_code": batch.last_status_code,
        "last_error": batch.last_error,
        "delivered_at": _when(batch.delivered_at),
        "created_at": iso_resource(batch.created_at),
        "log": [attempt_body(a) for a in attempts],
    }


# -- the payload ----------------------------------------------------------------------------------------------


def message_event(row: Row[Any], event_name: str) -> dict[str, Any]:
    """One SparkPost-style event, ``{"msys": {"message_event": {...}}}``, from an email event row.

    SparkPost's conventions: ``timestamp`` is unix seconds as a string, ``transmission_id`` is our
    ``request_id``, ``bounce_class`` is a string. ``event_name`` carries the canonical name the subscription
    filter matched, so the filter and the payload agree.
    """
    event = event_body(row)
    event["transmission_id"] = event.pop("request_id")
    event["timestamp"] = str(int(row.occurred_at.timestamp()))
    event["event_name"] = event_name
    event["tags"] = event["rcpt_tags"]
    if "bounce_class" in event:
        event["bounce_class"] = str(event["bounce_class"])
    return {"msys": {PAYLOAD_CLASS[event_name.split(".", 1)[0]]: event}}


def batch_payload(events: Sequence[tuple[Row[Any], str]]) -> bytes:
    """The body of one delivery: a JSON array of events, oldest first."""
    return msgspec.json.encode([message_event(row, name) for row, name in events])


# -- OpenAPI documentation (postroom.core.openapi): what the parsers above accept and the bodies above are ---------

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=r"^\s*[^\s\r\n\x00][^\r\n\x00]*$")]
_Url = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL, extra_json_schema={"format": "uri"})]
_Credential = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CREDENTIAL, pattern=r"^[^\r\n\x00]*\S")]
_EventName = Annotated[str, msgspec.Meta(extra_json_schema={"enum": [*EVENT_NAMES, *CANONICAL_BY_TYPE]})]
_Events = Annotated[list[_EventName], msgspec.Meta(min_length=1)]
_AuthType = Literal["none", "basic", "oauth2"]
_EventsMode = Literal["all", "selected"]


class CreateWebhookInput(msgspec.Struct, kw_only=True):
    """``events`` is required when ``events_mode`` is ``selected``; ``basic`` needs ``auth_username`` and
    ``auth_password``, ``oauth2`` the three ``oauth_*`` fields. ``target`` is the deprecated name of ``url``."""

    name: _Name
    url: _Url
    auth_type: _AuthType
    events_mode: _EventsMode
    events: _Events | None | UnsetType = UNSET
    target: _Url | None | UnsetType = UNSET
    auth_username: _Credential | None | UnsetType = UNSET
    auth_password: _Credential | None | UnsetType = UNSET
    oauth_client_id: _Credential | None | UnsetType = UNSET
    oauth_client_secret: _Credential | None | UnsetType = UNSET
    oauth_token_url: _Url | None | UnsetType = UNSET


class UpdateWebhookInput(msgspec.Struct, kw_only=True):
    """A partial update: only what is given changes (``active`` and ``enabled`` are the same switch)."""

    name: _Name | None | UnsetType = UNSET
    url: _Url | None | UnsetType = UNSET
    target: _Url | None | UnsetType = UNSET
    auth_type: _AuthType | None | UnsetType = UNSET
    auth_username: _Credential | None | UnsetType = UNSET
    auth_password: _Credential | None | UnsetType = UNSET
    oauth_client_id: _Credential | None | UnsetType = UNSET
    oauth_client_secret: _Credential | None | UnsetType = UNSET
    oauth_token_url: _Url | None | UnsetType = UNSET
    events_mode: _EventsMode | None | UnsetType = UNSET
    events: _Events | None | UnsetType = UNSET
    active: bool | None | UnsetType = UNSET
    enabled: bool | None | UnsetType = UNSET


class RotateSecretInput(msgspec.Struct, kw_only=True):
    """Optional; an empty body means ``{"overlap_hours": 24, "force": false}``."""

    overlap_hours: Annotated[int, msgspec.Meta(ge=0, le=MAX_OVERLAP_HOURS)] | UnsetType = UNSET
    force: bool | UnsetType = UNSET


class Webhook(msgspec.Struct, kw_only=True):
    """Lettr's Webhook object plus Postroom's fields; ``event_types`` null means every event."""

    id: str
    name: str
    url: str
    enabled: bool
    event_types: list[str] | None
    auth_type: str
    has_auth_credentials: bool
    last_successful_at: Timestamp | None
    last_failure_at: Timestamp | None
    last_status: str | None
    disabled_reason: str | None
    secret_rotation_ends_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class WebhookWithSecret(Webhook, kw_only=True):
    """After create and rotation: the new ``signing_secret``, shown this once."""

    signing_secret: str


class WebhookList(msgspec.Struct):
    webhooks: list[Webhook]


class DeliveryAttempt(msgspec.Struct):
    attempt: int
    trigger: str
    started_at: Timestamp
    success: bool
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None
    error: str | None


class Delivery(msgspec.Struct):
    id: str
    webhook_id: str
    status: str
    event_count: int
    attempts: int
    next_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Timestamp | None
    created_at: Timestamp
    log: list[DeliveryAttempt]


class DeliveryList(msgspec.Struct):
    deliveries: list[Delivery]
    pagination: Pagination
