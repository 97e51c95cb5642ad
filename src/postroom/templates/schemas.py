"""Wire shapes for templates and folders: reading request bodies and query parameters with the
contract's messages, and the response bodies the SDKs parse (required keys always present, null when unknown)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from postroom.core.clock import iso_resource
from postroom.core.headers import SAFE_CHARACTER, unsafe_message
from postroom.core.ids import MAX_ROW_ID
from postroom.core.openapi import Pagination, RowId, Timestamp
from postroom.errors import ValidationFailed
from postroom.templates.service import PURPOSES, FolderRecord, TemplateRecord

MAX_NAME = 255
MAX_SUBJECT = 998
MAX_CONTENT = 5 * 1024 * 1024
"""html and json content: the same 5 MB as a send's html."""

_CREATE_FIELDS = frozenset({"name", "html", "json", "subject", "project_id", "folder_id", "purpose"})
_UPDATE_FIELDS = frozenset({"name", "html", "json", "subject", "project_id", "purpose"})


@dataclass(frozen=True, slots=True)
class TemplateInput:
    """``POST /templates``. ``subject`` is Postroom's extension: the default subject of sends with the template."""

    name: str
    html: str | None
    json: str | None
    subject: str | None
    project_id: int | None
    folder_id: int | None
    purpose: str | None


@dataclass(frozen=True, slots=True)
class TemplateChanges:
    """``PUT /templates/{slug}``: only what was given changes; html, json or subject make a new version."""

    name: str | None
    html: str | None
    json: str | None
    subject: str | None
    subject_given: bool
    project_id: int | None

    @property
    def new_content(self) -> bool:
        return self.html is not None or self.json is not None or self.subject_given


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field_name: str, message: str) -> None:
        self.errors.setdefault(field_name, []).append(message)

    def raise_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


def _text(body: dict[str, Any], name: str, errors: _Errors, *, maximum: int) -> str | None:
    """A string field; absent, null and "" all mean "not given" (as Laravel's empty-string conversion does)."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors.add(name, f"The {name} field must be a string.")
        return None
    if len(value) > maximum:
        errors.add(name, f"The {name} must not be greater than {maximum} characters.")
        return None
    if "\x00" in value:
        errors.add(name, f"The {name} must not contain NUL characters.")
        return None
    return value


def _integer_field(body: dict[str, Any], name: str, errors: _Errors) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        errors.add(name, f"The {name} parameter must be an integer.")
        return None
    if not 1 <= value <= MAX_ROW_ID:
        errors.add(name, f"The {name} parameter must be between 1 and {MAX_ROW_ID}.")
        return None
    return value


def _content(body: dict[str, Any], errors: _Errors) -> tuple[str | None, str | None]:
    html = _text(body, "html", errors, maximum=MAX_CONTENT)
    json_text = _text(body, "json", errors, maximum=MAX_CONTENT)
    if json_text is not None:
        try:
            msgspec.json.decode(json_text)
        except msgspec.DecodeError:
            errors.add("json", "The provided JSON is not valid.")
    return html, json_text


def _subject(body: dict[str, Any], errors: _Errors) -> str | None:
    subject = _text(body, "subject", errors, maximum=MAX_SUBJECT)
    problem = None if subject is None else unsafe_message("subject", subject)
    if problem is not None:
        errors.add("subject", problem)
        return None
    return subject


def _name(body: dict[str, Any], errors: _Errors, *, required: bool) -> str | None:
    name = _text(body, "name", errors, maximum=MAX_NAME)
    if name is not None and not name.strip():
        name = None
    if name is None and required and "name" not in errors.errors:
        errors.add("name", "The name field is required.")
    problem = None if name is None else unsafe_message("name", name)  # the subject of sends without one
    if problem is not None:
        errors.add("name", problem)
    return name.strip() if name else None


def _unknown(body: dict[str, Any], known: frozenset[str], errors: _Errors) -> None:
    for name in sorted(set(body) - known):
        errors.add(name, f"The {name} field is not supported.")


def parse_create(body: dict[str, Any]) -> TemplateInput:
    errors = _Errors()
    _unknown(body, _CREATE_FIELDS, errors)
    name = _name(body, errors, required=True)
    html, json_text = _content(body, errors)
    if html is not None and json_text is not None:
        errors.add("json", "The json and html fields are mutually exclusive. Provide only one.")
    elif html is None and json_text is None and "html" not in errors.errors and "json" not in errors.errors:
        errors.add("html", "Either html or json content is required.")
    subject = _subject(body, errors)
    project_id = _integer_field(body, "project_id", errors)
    folder_id = _integer_field(body, "folder_id", errors)
    purpose = body.get("purpose")
    if purpose is not None and purpose not in PURPOSES:
        errors.add("purpose", "The selected purpose is invalid.")
    errors.raise_any()
    assert name is not None  # noqa: S101 - required above
    return TemplateInput(
        name=name,
        html=html,
        json=json_text,
        subject=subject,
        project_id=project_id,
        folder_id=folder_id,
        purpose=purpose,
    )


def parse_update(body: dict[str, Any]) -> TemplateChanges:
    errors = _Errors()
    _unknown(body, _UPDATE_FIELDS, errors)
    if "purpose" in body:
        errors.add("purpose", "The purpose field is prohibited.")
    name = _name(body, errors, required=False)
    html, json_text = _content(body, errors)
    if html is not None and json_text is not None:
        errors.add("json", "The json field prohibits html from being present.")
    subject = _subject(body, errors)
    project_id = _integer_field(body, "project_id", errors)
    errors.raise_any()
    return TemplateChanges(
        name=name,
        html=html,
        json=json_text,
        subject=subject,
        subject_given="subject" in body,
        project_id=project_id,
    )


def query_integer(name: str, raw: str | None) -> int | None:
    """An integer query parameter (``project_id``, ``folder_id``, ``version``); 422 with the contract's wording."""
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed({name: [f"The {name} parameter must be an integer."]}) from None
    if value < 1:
        raise ValidationFailed({name: [f"The {name} parameter must be at least 1."]})
    if value > MAX_ROW_ID:
        raise ValidationFailed({name: [f"The {name} parameter must not exceed {MAX_ROW_ID}."]})
    return value


def query_purpose(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in PURPOSES:
        raise ValidationFailed({"purpose": ["The selected purpose is invalid."]})
    return raw


# -- response bodies ------------------------------------------------------------------------------------------


def template_list_item(template: TemplateRecord) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "slug": template.slug,
        "project_id": template.project_id,
        "folder_id": template.folder_id,
        "purpose": template.purpose,
        "preparation_status": template.preparation_status,
        "created_at": iso_resource(template.created_at),
        "updated_at": iso_resource(template.updated_at),
    }


def template_saved(template: TemplateRecord) -> dict[str, Any]:
    """After create and update: the list item plus the active version and its merge tags."""
    return {
        **template_list_item(template),
        "active_version": template.active_version,
        "merge_tags": template.active.merge_tags if template.active else [],
    }


def template_detail(template: TemplateRecord) -> dict[str, Any]:
    active = template.active
    return {
        **template_list_item(template),
        "active_version": template.active_version,
        "versions_count": template.versions_count,
        "html": active.html if active else None,
        "json": active.json if active else None,
        "subject": active.subject if active else None,
        "merge_tags": active.merge_tags if active else [],
    }


def folder_body(folder: FolderRecord) -> dict[str, Any]:
    return {
        "id": folder.id,
        "name": folder.name,
        "project_id": folder.project_id,
        "purpose": folder.purpose,
        "templates_count": folder.templates_count,
        "created_at": iso_resource(folder.created_at),
        "updated_at": iso_resource(folder.updated_at),
    }


# -- OpenAPI documentation (postroom.core.openapi): what the parsers above accept and the bodies above are ---------

_Name = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=f"^{SAFE_CHARACTER}*\\S{SAFE_CHARACTER}*$")
]
_Subject = Annotated[str, msgspec.Meta(max_length=MAX_SUBJECT, pattern=f"^{SAFE_CHARACTER}*$")]
_Content = Annotated[str, msgspec.Meta(max_length=MAX_CONTENT)]


class CreateTemplateInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of ``html`` or ``json`` (valid JSON text); ``subject`` is the default subject of its sends."""

    name: _Name
    html: _Content | None | UnsetType = UNSET
    json: _Content | None | UnsetType = UNSET
    subject: _Subject | None | UnsetType = UNSET
    project_id: RowId | None | UnsetType = UNSET
    folder_id: RowId | None | UnsetType = UNSET
    purpose: Literal["transactional", "campaign"] | None | UnsetType = UNSET


class UpdateTemplateInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only what is given changes; new ``html``, ``json`` or ``subject`` makes a new active version."""

    name: _Name | None | UnsetType = UNSET
    html: _Content | None | UnsetType = UNSET
    json: _Content | None | UnsetType = UNSET
    subject: _Subject | None | UnsetType = UNSET
    project_id: RowId | None | UnsetType = UNSET


class MergeTagField(msgspec.Struct):
    key: str


class MergeTag(msgspec.Struct, kw_only=True):
    """``children``: the fields used inside a loop over ``key``, present only when it is looped over."""

    key: str
    required: bool
    children: list[MergeTagField] | UnsetType = UNSET


class TemplateListItem(msgspec.Struct):
    """The fields every template body has; the saved and detailed shapes add theirs after them."""

    id: int
    name: str
    slug: str
    project_id: int
    folder_id: int
    purpose: str
    preparation_status: str
    created_at: Timestamp
    updated_at: Timestamp


class TemplateList(msgspec.Struct):
    templates: list[TemplateListItem]
    pagination: Pagination


class SavedTemplate(TemplateListItem, kw_only=True):
    active_version: int | None
    merge_tags: list[MergeTag]


class TemplateDetail(TemplateListItem, kw_only=True):
    active_version: int | None
    versions_count: int
    html: str | None
    json: str | None
    subject: str | None
    merge_tags: list[MergeTag]


class HtmlMergeTag(msgspec.Struct):
    key: str
    name: str
    required: bool


class TemplateHtml(msgspec.Struct):
    html: str
    merge_tags: list[HtmlMergeTag]
    subject: str | None


class TemplateHtmlResponse(msgspec.Struct):
    """``GET /templates/html`` keeps Lettr's own shape: ``success`` beside ``message`` and ``data``."""

    success: bool
    message: str
    data: TemplateHtml


class TemplateHtmlNotFoundBody(msgspec.Struct):
    """``GET /templates/html``'s 404: ``{"success": false, "message"}``, no ``error_code``."""

    success: bool
    message: str


class TemplateMergeTags(msgspec.Struct):
    project_id: int
    template_slug: str
    version: int
    merge_tags: list[MergeTag]


class Folder(msgspec.Struct):
    id: int
    name: str
    project_id: int
    purpose: str
    templates_count: int
    created_at: Timestamp
    updated_at: Timestamp


class FolderList(msgspec.Struct):
    folders: list[Folder]
    pagination: Pagination
