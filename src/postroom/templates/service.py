"""Templates, their versions and folders, and resolving the template of a send.

- Every project has folders; the default ones (one per purpose) are made with the project. Folders are read-only
  over the API.
- A template's slug comes from its name when it is created (``Welcome Email`` → ``welcome-email``) and never
  changes; a slug taken in the project gets the first free ``-2``, ``-3`` … suffix, and ``html`` (a route of its
  own) is never a slug.
- Every content change (html, json or subject) is a new immutable version that becomes the active one. Merge-tag
  syntax is checked when a version is saved (422 naming the field, line and column), so delivery never meets a
  syntax error, and the version's merge tags are extracted then and stored with it.
- ``json`` (Topol editor) content is stored as given. Postroom does not turn Topol designs into HTML, so a
  json-only version has no HTML to send: its template reports ``preparation_status: "failed"``,
  ``GET /templates/html`` answers 404 for it, and a send with it is refused with a 422 naming ``template_slug``.
  Updating the template with ``html`` makes it sendable.
- A send with ``template_slug`` stores the chosen version's content in the message (``resolve_for_send``), so
  what goes out does not change if the template is updated or deleted before delivery.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Row

from postroom.audit.service import Actor
from postroom.core.pagination import PageRequest
from postroom.errors import NotFound, TemplateHtmlNotFound, TemplateNotFound, ValidationFailed
from postroom.messages.request import SendRequest
from postroom.teams import service as teams_service
from postroom.templates import queries, rendering

PURPOSES = ("transactional", "campaign")
DEFAULT_FOLDERS = (("General", "transactional"), ("Campaigns", "campaign"))
RESERVED_SLUGS = frozenset({"html"})
MAX_SLUG = 255


@dataclass(frozen=True, slots=True)
class VersionRecord:
    number: int
    html: str | None
    json: str | None
    subject: str | None
    merge_tags: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    id: int
    name: str
    slug: str
    project_id: int
    folder_id: int
    purpose: str
    active_version: int | None
    created_at: datetime
    updated_at: datetime
    sendable: bool
    """Whether the active version has HTML (see the module docstring on json content)."""
    versions_count: int = 0
    active: VersionRecord | None = None

    @property
    def preparation_status(self) -> str:
        """Postroom prepares synchronously: ``ready``, or ``failed`` when there is no HTML to send."""
        return "ready" if self.sendable else "failed"


@dataclass(frozen=True, slots=True)
class FolderRecord:
    id: int
    name: str
    project_id: int
    purpose: str
    templates_count: int
    created_at: datetime
    updated_at: datetime


# -- projects and folders -------------------------------------------------------------------------------------


def create_default_folders(conn: Connection, *, team_id: int, project_id: int, now: datetime) -> None:
    """Give a new project its default folders; called wherever a project is created."""
    for name, purpose in DEFAULT_FOLDERS:
        queries.insert_folder(conn, team_id, project_id, name=name, purpose=purpose, is_default=True, now=now)


def resolve_project(conn: Connection, *, team_id: int, project_id: int | None) -> int:
    """The project named (if it is the team's) or the team's default; 404 ``not_found`` otherwise."""
    try:
        return teams_service.project_for_send(conn, team_id=team_id, project_id=project_id)
    except TemplateNotFound as missing:  # same messages; the template routes answer them as plain not_found
        raise NotFound(missing.message) from None


def list_folders(
    conn: Connection, *, team_id: int, project_id: int | None, purpose: str | None, page: PageRequest
) -> tuple[list[FolderRecord], int]:
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    rows = queries.folders_page(conn, team_id, project, purpose, offset=page.offset, limit=page.per_page)
    total = queries.count_folders(conn, team_id, project, purpose)
    return [
        FolderRecord(
            id=row.id,
            name=row.name,
            project_id=row.project_id,
            purpose=row.purpose,
            templates_count=int(row.templates_count),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ], total


def _folder_not_found(folder_id: int) -> NotFound:
    return NotFound(f"Folder with ID '{folder_id}' was not found in the specified project.")


# -- templates ------------------------------------------------------------------------------------------------


def slugify(name: str) -> str:
    """``Welcome Email`` → ``welcome-email``: ASCII letters and digits joined by single hyphens."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[: MAX_SLUG - 12].rstrip("-") or "template"  # room for a "-<n>" suffix


def _free_slug(conn: Connection, team_id: int, project_id: int, name: str) -> str:
    base = slugify(name)
    taken = queries.slugs_like(conn, team_id, project_id, base) | RESERVED_SLUGS
    if base not in taken:
        return base
    suffix = 2
    while f"{base}-{suffix}" in taken:
        suffix += 1
    return f"{base}-{suffix}"


def _merge_tags(html: str | None, subject: str | None) -> list[dict[str, Any]]:
    """Compile the version's parts (422 naming the part, line and column) and list their merge tags, html first,
    each key once (required if any part requires it)."""
    errors: dict[str, list[str]] = {}
    found: dict[str, dict[str, Any]] = {}
    for field, source in (("html", html), ("subject", subject)):
        if source is None:
            continue
        try:
            compiled = rendering.compile_checked(field, source)
        except ValidationFailed as failed:
            errors.update(failed.errors)
            continue
        for tag in compiled.merge_tags():
            known = found.get(tag["key"])
            if known is None:
                found[tag["key"]] = dict(tag)
            elif tag.get("required") and not known.get("required"):
                known["required"] = True
    if errors:
        raise ValidationFailed(errors)
    return list(found.values())


def _version(row: Row[Any]) -> VersionRecord:
    tags: list[dict[str, Any]] = msgspec.json.decode(row.merge_tags)
    return VersionRecord(
        number=row.version,
        html=row.html,
        json=row.json,
        subject=row.subject,
        merge_tags=tags,
        created_at=row.created_at,
    )


def _record(
    row: Row[Any], *, sendable: bool, versions_count: int = 0, active: VersionRecord | None = None
) -> TemplateRecord:
    return TemplateRecord(
        id=row.id,
        name=row.name,
        slug=row.slug,
        project_id=row.project_id,
        folder_id=row.folder_id,
        purpose=row.purpose,
        active_version=row.active_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sendable=sendable,
        versions_count=versions_count,
        active=active,
    )


def _full_record(conn: Connection, team_id: int, row: Row[Any]) -> TemplateRecord:
    count, _ = queries.version_stats(conn, team_id, row.id)
    active = None
    if row.active_version is not None:
        version_row = queries.version_of(conn, team_id, row.id, row.active_version)
        active = _version(version_row) if version_row is not None else None
    return _record(row, sendable=active is not None and active.html is not None, versions_count=count, active=active)


def _template(conn: Connection, team_id: int, project_id: int, slug: str) -> Row[Any]:
    row = queries.template_by_slug(conn, team_id, project_id, slug)
    if row is None:
        raise NotFound("Template not found.")
    return row


def _add_version(
    conn: Connection,
    *,
    team_id: int,
    project_id: int,
    template_id: int,
    number: int,
    html: str | None,
    json_text: str | None,
    subject: str | None,
    tags: list[dict[str, Any]],
    now: datetime,
) -> None:
    queries.insert_version(
        conn,
        {
            "team_id": team_id,
            "project_id": project_id,
            "template_id": template_id,
            "version": number,
            "html": html,
            "json": json_text,
            "subject": subject,
            "merge_tags": msgspec.json.encode(tags).decode(),
            "created_at": now,
        },
    )


def list_templates(
    conn: Connection,
    *,
    team_id: int,
    project_id: int | None,
    folder_id: int | None,
    purpose: str | None,
    page: PageRequest,
) -> tuple[list[TemplateRecord], int]:
    """One page of a project's templates; a folder outside the project is a 404, never an empty list."""
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    if folder_id is not None and queries.folder_in_project(conn, team_id, project, folder_id) is None:
        raise _folder_not_found(folder_id)
    rows = queries.templates_page(
        conn, team_id, project, folder_id=folder_id, purpose=purpose, offset=page.offset, limit=page.per_page
    )
    total = queries.count_templates(conn, team_id, project, folder_id=folder_id, purpose=purpose)
    return [_record(row, sendable=bool(row.has_html)) for row in rows], total


def create_template(
    conn: Connection,
    *,
    team_id: int,
    name: str,
    html: str | None,
    json_text: str | None,
    subject: str | None,
    project_id: int | None,
    folder_id: int | None,
    purpose: str | None,
    actor: Actor,
    now: datetime,
) -> TemplateRecord:
    """A new template with version 1 active. Without ``folder_id`` it goes to the project's first folder of its
    purpose; a named folder must be in the project and of that purpose."""
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    if folder_id is not None:
        folder = queries.folder_in_project(conn, team_id, project, folder_id)
        if folder is None:
            raise _folder_not_found(folder_id)
        purpose = purpose or folder.purpose
        if folder.purpose != purpose:
            raise ValidationFailed(
                {"folder_id": [f"The folder is for {folder.purpose} templates, not {purpose} ones."]}
            )
    else:
        purpose = purpose or "transactional"
        folder = queries.first_folder(conn, team_id, project, purpose)
        if folder is None:
            raise NotFound(f"Project with ID '{project}' has no folders. Please create a folder first.")
    tags = _merge_tags(html, subject)  # a 422 before anything is written
    queries.lock_project(conn, team_id, project)
    slug = _free_slug(conn, team_id, project, name)
    template_id = queries.insert_template(
        conn,
        {
            "team_id": team_id,
            "project_id": project,
            "folder_id": folder.id,
            "name": name,
            "slug": slug,
            "purpose": purpose,
            "active_version": 1,
            "created_at": now,
            "updated_at": now,
        },
    )
    _add_version(
        conn,
        team_id=team_id,
        project_id=project,
        template_id=template_id,
        number=1,
        html=html,
        json_text=json_text,
        subject=subject,
        tags=tags,
        now=now,
    )
    created = get_template(conn, team_id=team_id, project_id=project, slug=slug)
    actor.record(
        conn, team_id=team_id, action="template.created", target=_target(created), new=_audit_view(created), now=now
    )
    return created


def _audit_view(record: TemplateRecord) -> dict[str, Any]:
    """What the audit log keeps of a template: its identity, active version and subject, not its content."""
    active = record.active
    return {
        "name": record.name,
        "project_id": record.project_id,
        "folder_id": record.folder_id,
        "active_version": record.active_version,
        "subject": active.subject if active else None,
        "html_chars": len(active.html) if active and active.html else 0,
    }


def _target(record: TemplateRecord) -> str:
    return f"template:{record.slug}"


def get_template(conn: Connection, *, team_id: int, project_id: int | None, slug: str) -> TemplateRecord:
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    return _full_record(conn, team_id, _template(conn, team_id, project, slug))


def update_template(
    conn: Connection,
    *,
    team_id: int,
    slug: str,
    project_id: int | None,
    name: str | None,
    html: str | None,
    json_text: str | None,
    subject: str | None,
    subject_given: bool,
    actor: Actor,
    now: datetime,
) -> TemplateRecord:
    """Rename and/or add a new active version. Content not given is carried over from the active version: new
    html replaces json and the other way round (they are exclusive); the subject stays unless given (null clears
    it). The slug never changes."""
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    row = _template(conn, team_id, project, slug)
    before = _full_record(conn, team_id, row)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if html is not None or json_text is not None or subject_given:
        current = (
            queries.version_of(conn, team_id, row.id, row.active_version) if row.active_version is not None else None
        )
        if html is None and json_text is None and current is not None:
            html, json_text = current.html, current.json
        if not subject_given and current is not None:
            subject = current.subject
        _, highest = queries.version_stats(conn, team_id, row.id)
        _add_version(
            conn,
            team_id=team_id,
            project_id=project,
            template_id=row.id,
            number=highest + 1,
            html=html,
            json_text=json_text,
            subject=subject,
            tags=_merge_tags(html, subject),
            now=now,
        )
        changes["active_version"] = highest + 1
    if changes:
        changes["updated_at"] = now
        queries.update_template(conn, team_id, row.id, changes)
    after = get_template(conn, team_id=team_id, project_id=project, slug=slug)
    actor.record_change(
        conn,
        team_id=team_id,
        action="template.updated",
        target=_target(after),
        old=_audit_view(before),
        new=_audit_view(after),
        now=now,
    )
    return after


def delete_template(
    conn: Connection, *, team_id: int, project_id: int | None, slug: str, actor: Actor, now: datetime
) -> None:
    """The template and every version. Sends already accepted keep their own copy of the content."""
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    row = _template(conn, team_id, project, slug)
    before = _full_record(conn, team_id, row)
    queries.delete_template(conn, team_id, row.id)
    actor.record(
        conn, team_id=team_id, action="template.deleted", target=_target(before), old=_audit_view(before), now=now
    )


@dataclass(frozen=True, slots=True)
class MergeTags:
    project_id: int
    slug: str
    version: int
    merge_tags: list[dict[str, Any]]


def merge_tags(conn: Connection, *, team_id: int, project_id: int | None, slug: str, version: int | None) -> MergeTags:
    """The merge tags of one version (default: the active one); 404 for a missing template or version."""
    project = resolve_project(conn, team_id=team_id, project_id=project_id)
    row = _template(conn, team_id, project, slug)
    number = version if version is not None else row.active_version
    version_row = queries.version_of(conn, team_id, row.id, number) if number is not None else None
    if version_row is None:
        raise NotFound(f"Version {number} of template '{slug}' was not found." if number else "Version not found.")
    return MergeTags(
        project_id=project, slug=row.slug, version=number or 0, merge_tags=_version(version_row).merge_tags
    )


def template_html(conn: Connection, *, team_id: int, project_id: int, slug: str) -> VersionRecord:
    """The active version, for ``GET /templates/html``; its own 404 shape for anything missing."""
    try:
        template = get_template(conn, team_id=team_id, project_id=project_id, slug=slug)
    except NotFound:
        raise TemplateHtmlNotFound() from None
    if template.active is None:
        raise TemplateHtmlNotFound()
    if template.active.html is None:
        raise TemplateHtmlNotFound("Template has no HTML: Postroom does not render Topol (json) content.")
    return template.active


# -- sending --------------------------------------------------------------------------------------------------


def resolve_for_send(conn: Connection, *, team_id: int, project_id: int, request: SendRequest) -> SendRequest:
    """The send with the template's content in it: its HTML replaces ``html``; the subject is the caller's, else
    the version's, else the template's name; ``template_version`` is the version used. 404 ``template_not_found``
    with Lettr's messages when the template or version is missing; 422 when it cannot be sent, a part given
    with it has a merge-tag syntax error, or its subject or from name renders to a value no header may hold."""
    slug = request.template_slug
    assert slug is not None  # noqa: S101 - only called for templated sends
    row = queries.template_by_slug(conn, team_id, project_id, slug)
    if row is None:
        raise TemplateNotFound(f"Template with slug '{slug}' was not found.")
    number = request.template_version or row.active_version
    if number is None:
        raise TemplateNotFound(
            f"Template '{slug}' has no active version. Publish a version of this template before using it."
        )
    version = queries.version_of(conn, team_id, row.id, number)
    if version is None:
        raise TemplateNotFound(f"Version {number} of template '{slug}' was not found.")
    if row.purpose != "transactional":
        raise ValidationFailed(
            {"template_slug": [f"Template '{slug}' is a campaign template; only transactional templates can be sent."]}
        )
    if version.html is None:
        raise ValidationFailed(
            {
                "template_slug": [
                    f"Version {number} of template '{slug}' has no HTML to send: Postroom does not render Topol "
                    "(json) content. Update the template with html."
                ]
            }
        )
    subject = request.subject or version.subject or row.name
    # The version's html and subject were checked when it was saved; compile only what this send brings itself
    # (this runs inside the accepting transaction, so a large template is not compiled again here).
    own_subject = None if not request.subject and version.subject else subject
    rendering.check_send(dataclasses.replace(request, html=None, subject=own_subject))
    resolved = dataclasses.replace(request, html=version.html, subject=subject, template_version=number)
    rendering.check_headers(resolved)
    return resolved
