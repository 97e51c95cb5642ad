"""Templates, versions and folders through the official SDK against a live Postroom on both databases, and sends
that use a template rendered per recipient into a real SMTP server on loopback."""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lettr import Lettr
from lettr._exceptions import ForbiddenError, NotFoundError, ValidationError
from sqlalchemy import insert, select, update

from postroom.domains.service import SendingDomain
from postroom.models import folders, projects, scheduled_emails, teams, work_items
from tests.conftest import Backend, Server, bearer, http_from, wait_for_state
from tests.support.migrations import migrating
from tests.support.smtp_sink import SmtpSink

INSUFFICIENT = {
    "message": "Your API key does not have the required permissions for this action.",
    "error_code": "insufficient_scope",
}


@pytest.fixture
def client(server: Server, backend: Backend) -> Lettr:
    return Lettr(backend.create_key().key, base_url=server.api_url)


def unique(name: str) -> str:
    """Tests share one server per backend: every template name gets its own suffix."""
    return f"{name} {secrets.token_hex(3)}"


def slug_of(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def api(server: Server, backend: Backend, method: str, path: str, **kwargs: Any) -> Any:
    with http_from() as http:
        return http.request(method, server.api_url + path, headers=bearer(backend.create_key().key), **kwargs)


def default_project_id(client: Lettr) -> int:
    [project] = [p for p in client.projects.list().projects if p.name == "Default project"]
    return project.id


# -- folders --------------------------------------------------------------------------------------------------


def test_every_project_has_a_default_folder_per_purpose(client: Lettr) -> None:
    listing = client.folders.list()
    by_purpose = {f.purpose: f for f in listing.folders}
    assert set(by_purpose) == {"transactional", "campaign"}
    assert by_purpose["transactional"].name == "General"
    assert all(isinstance(f.id, int) and f.project_id == default_project_id(client) for f in listing.folders)
    assert (listing.total, listing.per_page, listing.current_page, listing.last_page) == (2, 25, 1, 1)
    assert [f.purpose for f in client.folders.list(purpose="campaign").folders] == ["campaign"]
    page = client.folders.list(per_page=1, page=2)
    assert (len(page.folders), page.total, page.last_page) == (1, 2, 2)


def test_folder_listing_counts_templates_and_refuses_other_projects(client: Lettr) -> None:
    general = next(f for f in client.folders.list().folders if f.purpose == "transactional")
    before = general.templates_count
    client.templates.create(name=unique("Counted"), html="<p>x</p>")
    after = next(f for f in client.folders.list().folders if f.id == general.id)
    assert after.templates_count == before + 1
    with pytest.raises(NotFoundError) as excinfo:
        client.folders.list(project_id=987654)
    assert str(excinfo.value) == "Project with ID '987654' was not found or you don't have access to it."
    assert excinfo.value.error_code == "not_found"


# -- the template lifecycle -----------------------------------------------------------------------------------


def test_create_get_list_update_and_delete_a_template(client: Lettr) -> None:
    name = unique("Welcome Email")
    created = client.templates.create(name=name, html="<h1>Hello {{first_name}}</h1>")
    general = next(f for f in client.folders.list().folders if f.purpose == "transactional")
    assert created.slug == slug_of(name)
    assert isinstance(created.id, int)
    assert (created.project_id, created.folder_id) == (default_project_id(client), general.id)
    assert (created.purpose, created.preparation_status, created.active_version) == ("transactional", "ready", 1)
    assert [t.key for t in created.merge_tags or []] == ["first_name"]
    assert created.merge_tags and created.merge_tags[0].required is True

    fetched = client.templates.get(created.slug)
    assert (fetched.id, fetched.name, fetched.versions_count, fetched.active_version) == (created.id, name, 1, 1)
    assert fetched.html == "<h1>Hello {{first_name}}</h1>" and fetched.json is None
    assert fetched.updated_at is not None

    listed = client.templates.list(per_page=100)
    assert created.slug in [t.slug for t in listed.templates]
    assert listed.per_page == 100
    assert created.slug in [t.slug for t in client.templates.list(folder_id=general.id, per_page=100).templates]
    assert created.slug not in [t.slug for t in client.templates.list(purpose="campaign", per_page=100).templates]

    updated = client.templates.update(created.slug, html="<h1>Welcome back, {{first_name}} {{last_name}}</h1>")
    assert (updated.slug, updated.active_version) == (created.slug, 2)
    assert sorted(t.key for t in updated.merge_tags or []) == ["first_name", "last_name"]
    again = client.templates.get(created.slug)
    assert (again.versions_count, again.active_version) == (2, 2)
    assert again.html == "<h1>Welcome back, {{first_name}} {{last_name}}</h1>"

    renamed = client.templates.update(created.slug, name="Renamed " + name)
    assert (renamed.slug, renamed.active_version) == (created.slug, 2)  # the slug never changes
    assert client.templates.get(created.slug).versions_count == 2  # a rename is not a version

    assert [t.key for t in client.templates.get_merge_tags(created.slug, version=1).merge_tags] == ["first_name"]
    latest = client.templates.get_merge_tags(created.slug)
    assert (latest.version, latest.template_slug, latest.project_id) == (2, created.slug, created.project_id)

    client.templates.delete(created.slug)
    with pytest.raises(NotFoundError) as excinfo:
        client.templates.get(created.slug)
    assert excinfo.value.error_code == "not_found"
    assert created.slug not in [t.slug for t in client.templates.list(per_page=100).templates]


def test_raw_responses_have_the_contract_shapes(server: Server, backend: Backend) -> None:
    name = unique("Shapes")
    response = api(server, backend, "POST", "/templates", json={"name": name, "html": "<p>{{a}}</p>"})
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Template created successfully."
    assert {"id", "name", "slug", "project_id", "folder_id", "purpose", "preparation_status", "active_version",
            "merge_tags", "created_at"} <= set(body["data"])  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", body["data"]["created_at"])
    slug = body["data"]["slug"]
    detail = api(server, backend, "GET", f"/templates/{slug}").json()["data"]
    assert detail["versions_count"] == 1 and "updated_at" in detail and detail["json"] is None
    deleted = api(server, backend, "DELETE", f"/templates/{slug}")
    assert (deleted.status_code, deleted.json()) == (200, {"message": "Template deleted successfully."})
    gone = api(server, backend, "DELETE", f"/templates/{slug}")
    assert (gone.status_code, gone.json()["error_code"]) == (404, "not_found")


def test_slugs_are_unique_per_project_and_never_html(client: Lettr) -> None:
    name = unique("Order Shipped")
    first = client.templates.create(name=name, html="<p>1</p>")
    second = client.templates.create(name=name, html="<p>2</p>")
    assert (first.slug, second.slug) == (slug_of(name), slug_of(name) + "-2")
    assert client.templates.get(second.slug).html == "<p>2</p>"
    html_named = client.templates.create(name="HTML", html="<p>h</p>")
    assert html_named.slug != "html" and html_named.slug.startswith("html-")
    assert client.templates.get(html_named.slug).id == html_named.id
    accented = client.templates.create(name="Ünïcödé Ñews ✓", html="<p>u</p>")
    assert accented.slug.startswith("unicode-news")


def test_get_html_is_a_static_route_with_its_own_404(server: Server, backend: Backend, client: Lettr) -> None:
    created = client.templates.create(name=unique("Receipt"), html="<p>Total: {{total}}</p>")
    fetched = client.templates.get_html(project_id=created.project_id, slug=created.slug)
    assert fetched.html == "<p>Total: {{total}}</p>"
    assert [(t.key, t.name, t.required) for t in fetched.merge_tags or []] == [("total", "total", True)]
    assert fetched.subject is None
    missing = api(server, backend, "GET", "/templates/html", params={"project_id": created.project_id, "slug": "no"})
    assert (missing.status_code, missing.json()) == (404, {"success": False, "message": "Template not found."})
    raw = api(
        server, backend, "GET", "/templates/html", params={"project_id": created.project_id, "slug": created.slug}
    )
    assert raw.json()["success"] is True
    unnamed = api(server, backend, "GET", "/templates/html")
    assert unnamed.status_code == 422
    assert set(unnamed.json()["errors"]) == {"project_id", "slug"}


def test_a_subject_is_stored_per_version(server: Server, backend: Backend, client: Lettr) -> None:
    body = {"name": unique("With Subject"), "html": "<p>{{body}}</p>", "subject": "Hi {{first_name}}"}
    created = api(server, backend, "POST", "/templates", json=body).json()["data"]
    assert sorted(t["key"] for t in created["merge_tags"]) == ["body", "first_name"]
    slug = created["slug"]
    assert client.templates.get_html(project_id=created["project_id"], slug=slug).subject == "Hi {{first_name}}"
    client.templates.update(slug, html="<p>new</p>")  # the subject carries over to the new version
    assert api(server, backend, "GET", f"/templates/{slug}").json()["data"]["subject"] == "Hi {{first_name}}"


# -- refusals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"html": "<p>x</p>"}, {"name": ["The name field is required."]}),
        ({"name": "   ", "html": "<p>x</p>"}, {"name": ["The name field is required."]}),
        ({"name": "x" * 256, "html": "<p>x</p>"}, {"name": ["The name must not be greater than 255 characters."]}),
        ({"name": "No content"}, {"html": ["Either html or json content is required."]}),
        ({"name": "Both", "html": "<p>x</p>", "json": "{}"},
         {"json": ["The json and html fields are mutually exclusive. Provide only one."]}),
        ({"name": "Bad JSON", "json": "{not json"}, {"json": ["The provided JSON is not valid."]}),
        ({"name": "Purpose", "html": "<p>x</p>", "purpose": "newsletter"}, {"purpose": ["The selected purpose is invalid."]}),
        ({"name": "Project", "html": "<p>x</p>", "project_id": "1"},
         {"project_id": ["The project_id parameter must be an integer."]}),
        ({"name": "Extra", "html": "<p>x</p>", "colour": "red"}, {"colour": ["The colour field is not supported."]}),
    ],
)  # fmt: skip
def test_bad_template_input_gets_a_422_naming_the_field(
    server: Server, backend: Backend, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    response = api(server, backend, "POST", "/templates", json=body)
    assert response.status_code == 422, response.text
    assert response.json() == {"message": "Validation failed.", "error_code": "validation_error", "errors": errors}


def test_a_merge_tag_syntax_error_is_refused_with_its_line_and_column(
    server: Server, backend: Backend, client: Lettr
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        client.templates.create(name=unique("Broken"), html="<p>fine</p>\n<p>{{if }}</p>")
    [message] = excinfo.value.errors["html"]
    assert "line 2, column" in message
    response = api(server, backend, "POST", "/templates", json={"name": "S", "html": "<p/>", "subject": "Hi {{"})
    assert response.status_code == 422 and "line 1, column" in response.json()["errors"]["subject"][0]

    good = client.templates.create(name=unique("Kept"), html="<p>{{x}}</p>")
    with pytest.raises(ValidationError) as excinfo:
        client.templates.update(good.slug, html="<p>{{each}}</p>")
    assert "line 1, column" in excinfo.value.errors["html"][0]
    kept = client.templates.get(good.slug)
    assert (kept.versions_count, kept.html) == (1, "<p>{{x}}</p>")  # nothing was saved


def test_update_refusals(server: Server, backend: Backend, client: Lettr) -> None:
    created = client.templates.create(name=unique("Update Me"), html="<p>x</p>")
    with pytest.raises(ValidationError) as excinfo:
        client.templates.update(created.slug, html="<p>y</p>", json="{}")
    assert excinfo.value.errors == {"json": ["The json field prohibits html from being present."]}
    with pytest.raises(ValidationError) as excinfo:
        client.templates.update(created.slug, name="n" * 256)
    assert excinfo.value.errors == {"name": ["The name must not be greater than 255 characters."]}
    response = api(server, backend, "PUT", f"/templates/{created.slug}", json={"purpose": "campaign"})
    assert response.status_code == 422 and "purpose" in response.json()["errors"]
    with pytest.raises(NotFoundError):
        client.templates.update("no-such-template", name="x")


def test_missing_things_are_404s_and_bad_parameters_422s(server: Server, backend: Backend, client: Lettr) -> None:
    created = client.templates.create(name=unique("Lookups"), html="<p>x</p>")
    for call in (
        lambda: client.templates.get("no-such-template"),
        lambda: client.templates.delete("no-such-template"),
        lambda: client.templates.get_merge_tags("no-such-template"),
        lambda: client.templates.get_merge_tags(created.slug, version=99),
        lambda: client.templates.get(created.slug, project_id=987654),
        lambda: client.templates.list(project_id=987654),
    ):
        with pytest.raises(NotFoundError) as excinfo:
            call()
        assert excinfo.value.error_code == "not_found"
    with pytest.raises(NotFoundError) as excinfo:
        client.templates.list(folder_id=987654)
    assert str(excinfo.value) == "Folder with ID '987654' was not found in the specified project."
    with pytest.raises(NotFoundError) as excinfo:
        client.templates.create(name="Nowhere", html="<p>x</p>", folder_id=987654)
    assert str(excinfo.value) == "Folder with ID '987654' was not found in the specified project."
    with pytest.raises(NotFoundError) as excinfo:
        client.templates.create(name="Nowhere", html="<p>x</p>", project_id=987654)
    assert str(excinfo.value) == "Project with ID '987654' was not found or you don't have access to it."

    for path, params, field, message in (
        (f"/templates/{created.slug}", {"project_id": "abc"}, "project_id", "The project_id parameter must be an integer."),
        (f"/templates/{created.slug}/merge-tags", {"version": "v2"}, "version", "The version parameter must be an integer."),
        ("/templates", {"per_page": "101"}, "per_page", "The per_page parameter must not exceed 100."),
        ("/folders", {"purpose": "other"}, "purpose", "The selected purpose is invalid."),
    ):  # fmt: skip
        response = api(server, backend, "GET", path, params=params)
        assert response.status_code == 422, path
        assert response.json()["errors"] == {field: [message]}


def test_a_campaign_template_goes_to_a_campaign_folder(client: Lettr) -> None:
    campaign_folder = next(f for f in client.folders.list().folders if f.purpose == "campaign")
    created = client.templates.create(name=unique("Newsletter"), html="<p>x</p>", purpose="campaign")
    assert (created.purpose, created.folder_id) == ("campaign", campaign_folder.id)
    general = next(f for f in client.folders.list().folders if f.purpose == "transactional")
    with pytest.raises(ValidationError) as excinfo:
        client.templates.create(name="Mismatch", html="<p>x</p>", folder_id=general.id, purpose="campaign")
    assert "folder_id" in excinfo.value.errors


def test_json_templates_are_stored_but_have_no_html_to_send(
    server: Server, backend: Backend, client: Lettr, sending_domain: SendingDomain
) -> None:
    design = '{"tagName": "mj-global-style", "children": []}'
    created = client.templates.create(name=unique("Topol Design"), json=design)
    assert (created.active_version, created.preparation_status) == (1, "failed")
    fetched = client.templates.get(created.slug)
    assert (fetched.json, fetched.html) == (design, None)
    missing = api(
        server, backend, "GET", "/templates/html", params={"project_id": created.project_id, "slug": created.slug}
    )
    assert missing.status_code == 404 and missing.json()["success"] is False
    with pytest.raises(ValidationError) as excinfo:
        client.emails.send(from_email="news@sender.test", to=["j@example.test"], template_slug=created.slug)
    assert "template_slug" in excinfo.value.errors
    client.templates.update(created.slug, html="<p>now sendable</p>")
    assert client.templates.get(created.slug).preparation_status == "ready"


def test_sending_only_keys_get_403_on_every_template_route(server: Server, backend: Backend) -> None:
    key = backend.create_key(permission="sending").key
    routes = [
        ("GET", "/templates"), ("POST", "/templates"), ("GET", "/templates/html"), ("GET", "/templates/some-slug"),
        ("PUT", "/templates/some-slug"), ("DELETE", "/templates/some-slug"), ("GET", "/templates/some-slug/merge-tags"),
        ("GET", "/folders"),
    ]  # fmt: skip
    with http_from() as http:
        for method, path in routes:
            body = {"name": "x", "html": "<p>x</p>"} if method in ("POST", "PUT") else None
            response = http.request(method, server.api_url + path, headers=bearer(key), json=body)
            assert (response.status_code, response.json()) == (403, INSUFFICIENT), (method, path)
    sending_client = Lettr(key, base_url=server.api_url)
    for call in (sending_client.templates.list, sending_client.folders.list):
        with pytest.raises(ForbiddenError) as excinfo:
            call()
        assert excinfo.value.error_code == "insufficient_scope"


def test_the_default_folders_come_with_the_migration_for_existing_projects(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with migrating(tmp_path / "old.db") as db:
        db.upgrade("0004")
        db.conn.execute(insert(teams).values(id=7, name="Old team", created_at=now, updated_at=now))
        db.conn.execute(
            insert(projects).values(
                id=70, team_id=7, name="Old project", emoji=None, is_default=True, created_at=now, updated_at=now
            )
        )
        db.upgrade("0005")
        found = db.conn.execute(select(folders.c.team_id, folders.c.project_id, folders.c.purpose)).fetchall()
    assert sorted(tuple(row) for row in found) == [(7, 70, "campaign"), (7, 70, "transactional")]


# -- sending with a template ----------------------------------------------------------------------------------


def parsed(message: Any) -> Any:
    return email.message_from_bytes(message.data, policy=email.policy.default)


def test_a_template_send_is_rendered_for_each_recipient(
    client: Lettr, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    template = client.templates.create(
        name=unique("Order Confirmation"),
        html="<p>Hello {{name}}, this is for {{email}}.</p><div>{{{banner}}}</div>"
        "<ul>{{each items}}<li>{{loop_var.title}}</li>{{end}}</ul>",
    )
    response = client.emails.send(
        from_email="orders@sender.test",
        from_name="{{shop}} orders",
        to=["ann@example.test", "bob@example.test"],
        subject="Order for {{name}} <{{email}}>",
        text="Hello {{name}} ({{email}}), {{shop or 'our shop'}} thanks you.",
        template_slug=template.slug,
        substitution_data={
            "name": "Tom & <Jerry>",
            "shop": "Acme",
            "banner": "<b>SALE</b>",
            "items": [{"title": "Anvil"}, {"title": "Rocket <skates>"}],
        },
    )
    assert (response.accepted, response.rejected) == (2, 0)
    received = sink.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in received) == ["ann@example.test", "bob@example.test"]
    for message in received:
        [recipient] = message.rcpt_tos
        mail = parsed(message)
        html = mail.get_body(("html",)).get_content()
        text = mail.get_body(("plain",)).get_content()
        assert f"<p>Hello Tom &amp; &lt;Jerry&gt;, this is for {recipient}.</p>" in html
        assert "<div><b>SALE</b></div>" in html  # {{{ }}} is not escaped
        assert "<li>Anvil</li><li>Rocket &lt;skates&gt;</li>" in html
        assert f"Hello Tom & <Jerry> ({recipient}), Acme thanks you." in text  # text is not HTML: not escaped
        assert mail["Subject"] == f"Order for Tom & <Jerry> <{recipient}>"
        assert mail["From"] == "Acme orders <orders@sender.test>"
    detail = wait_for_state(client, response.request_id, "delivered")
    assert sorted(e.type for e in detail.events) == ["delivery", "delivery", "injection", "injection"]


def test_a_send_can_pin_a_version_and_defaults_its_subject(
    server: Server, backend: Backend, client: Lettr, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    body = {"name": unique("Pinned"), "html": "<p>version one {{x}}</p>", "subject": "Subject {{x}}"}
    slug = api(server, backend, "POST", "/templates", json=body).json()["data"]["slug"]
    client.templates.update(slug, html="<p>version two {{x}}</p>")
    client.emails.send(
        from_email="news@sender.test", to=["pin@example.test"], template_slug=slug, template_version=1,
        substitution_data={"x": "42"},
    )  # fmt: skip
    [first] = sink.wait_for(1)
    assert "version one 42" in parsed(first).get_body(("html",)).get_content()
    assert parsed(first)["Subject"] == "Subject 42"
    sink.clear()
    client.emails.send(from_email="news@sender.test", to=["pin@example.test"], template_slug=slug, subject="Mine")
    [second] = sink.wait_for(1)
    assert "version two " in parsed(second).get_body(("html",)).get_content()  # a missing value renders empty
    assert parsed(second)["Subject"] == "Mine"  # the caller's subject wins


def test_a_template_without_a_subject_sends_with_its_name(
    client: Lettr, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    name = unique("Password Reset")
    template = client.templates.create(name=name, html="<p>reset</p>")
    client.emails.send(from_email="news@sender.test", to=["reset@example.test"], template_slug=template.slug)
    [received] = sink.wait_for(1)
    assert parsed(received)["Subject"] == name


def test_a_send_with_a_missing_template_gets_the_contracts_404s(client: Lettr, sending_domain: SendingDomain) -> None:
    template = client.templates.create(name=unique("Exists"), html="<p>x</p>")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"template_slug": "welcome-missing"}, "Template with slug 'welcome-missing' was not found."),
        ({"template_slug": template.slug, "template_version": 9}, f"Version 9 of template '{template.slug}' was not found."),
        ({"template_slug": template.slug, "project_id": 987654},
         "Project with ID '987654' was not found or you don't have access to it."),
    ]  # fmt: skip
    for fields, message in cases:
        with pytest.raises(NotFoundError) as excinfo:
            client.emails.send(from_email="news@sender.test", to=["x@example.test"], **fields)
        assert (excinfo.value.error_code, str(excinfo.value)) == ("template_not_found", message)
        with pytest.raises(NotFoundError) as excinfo:
            client.emails.schedule(
                from_email="news@sender.test", to=["x@example.test"],
                scheduled_at=datetime.now(UTC) + timedelta(hours=1), **fields,
            )  # fmt: skip
        assert (excinfo.value.error_code, str(excinfo.value)) == ("template_not_found", message)


def test_a_merge_tag_syntax_error_in_the_send_is_a_422(client: Lettr, sending_domain: SendingDomain) -> None:
    template = client.templates.create(name=unique("Fine"), html="<p>x</p>")
    with pytest.raises(ValidationError) as excinfo:
        client.emails.send(
            from_email="news@sender.test", to=["x@example.test"], template_slug=template.slug, subject="Hi {{if}}"
        )
    assert set(excinfo.value.errors) == {"subject"}
    assert "line 1, column" in excinfo.value.errors["subject"][0]


def test_a_scheduled_template_send_renders_when_released(
    client: Lettr, backend: Backend, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    template = client.templates.create(name=unique("Later"), html="<p>Later, {{name}}</p>")
    scheduled = client.emails.schedule(
        from_email="news@sender.test", to=["later@example.test"], template_slug=template.slug,
        substitution_data={"name": "Zoë"}, scheduled_at=datetime.now(UTC) + timedelta(minutes=10),
    )  # fmt: skip
    assert scheduled.subject is None and scheduled.tag == template.slug
    now = datetime.now(UTC)

    def release_now(conn: Any) -> None:
        conn.execute(update(work_items).where(work_items.c.ref == scheduled.request_id).values(run_at=now))
        conn.execute(
            update(scheduled_emails).where(scheduled_emails.c.id == scheduled.request_id).values(scheduled_at=now)
        )
        if conn.dialect.name == "postgresql":
            from sqlalchemy import text

            item_id = conn.execute(select(work_items.c.id).where(work_items.c.ref == scheduled.request_id)).scalar_one()
            conn.execute(
                text("UPDATE pgqueuer SET execute_after = now() WHERE payload = :payload"),
                {"payload": str(item_id).encode()},
            )

    backend.write(release_now)
    [received] = sink.wait_for(1, timeout=20)
    assert "<p>Later, Zoë</p>" in parsed(received).get_body(("html",)).get_content()


def test_a_render_over_the_limits_is_a_generation_failure_not_a_retry(
    client: Lettr, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    template = client.templates.create(name=unique("Huge Loop"), html="<ul>{{each items}}<li>x</li>{{end}}</ul>")
    response = client.emails.send(
        from_email="news@sender.test", to=["loop@example.test"], template_slug=template.slug,
        substitution_data={"items": list(range(20_000))},
    )  # fmt: skip
    assert response.accepted == 1
    detail = wait_for_state(client, response.request_id, "failed")
    [failure] = [e for e in detail.events if e.type == "generation_failure"]
    assert failure.rcpt_to == "loop@example.test"
    assert failure.reason and "limit" in failure.reason
    time.sleep(0.5)
    assert sink.messages == []
    assert [e.type for e in client.emails.get(response.request_id).events].count("generation_failure") == 1


def test_another_teams_templates_folders_and_projects_are_invisible(
    server: Server, backend: Backend, client: Lettr, sending_domain: SendingDomain
) -> None:
    from postroom.core.clock import utcnow
    from postroom.teams import queries as teams_queries
    from postroom.templates import service as templates_service

    mine = client.templates.create(name=unique("Private"), html="<p>secret {{x}}</p>")

    def other_team(conn: Any) -> int:
        now = utcnow()
        team_id = teams_queries.insert_team(conn, unique("Other team"), now)
        project_id = teams_queries.insert_project(conn, team_id, "Their project", is_default=True, now=now)
        templates_service.create_default_folders(conn, team_id=team_id, project_id=project_id, now=now)
        return team_id

    theirs = Lettr(backend.create_key(team_id=backend.write(other_team)).key, base_url=server.api_url)
    assert mine.slug not in [t.slug for t in theirs.templates.list(per_page=100).templates]
    assert mine.project_id not in [f.project_id for f in theirs.folders.list().folders]
    project_missing = f"Project with ID '{mine.project_id}' was not found or you don't have access to it."
    calls: tuple[Callable[[], object], ...] = (
        lambda: theirs.templates.get(mine.slug),
        lambda: theirs.templates.get_merge_tags(mine.slug),
        lambda: theirs.templates.delete(mine.slug),
        lambda: theirs.templates.update(mine.slug, html="<p>taken over</p>"),
    )
    for call in calls:
        with pytest.raises(NotFoundError):
            call()
    calls = (
        lambda: theirs.templates.get(mine.slug, project_id=mine.project_id),
        lambda: theirs.templates.list(project_id=mine.project_id),
        lambda: theirs.folders.list(project_id=mine.project_id),
        lambda: theirs.templates.get_html(project_id=mine.project_id, slug=mine.slug),
        lambda: theirs.templates.create(name="Intruder", html="<p>x</p>", project_id=mine.project_id),
    )
    for call in calls:
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(NotFoundError) as excinfo:
        theirs.emails.send(
            from_email="news@sender.test", to=["x@example.test"], template_slug=mine.slug, project_id=mine.project_id
        )
    assert (excinfo.value.error_code, str(excinfo.value)) == ("template_not_found", project_missing)
    assert client.templates.get(mine.slug).html == "<p>secret {{x}}</p>"  # untouched
