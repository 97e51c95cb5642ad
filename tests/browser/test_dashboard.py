"""The dashboard in a real browser against a live server: the operator's setup link, 2FA enrolment and sign-in,
roles enforced on the server, API keys made in the UI and used with the official SDK, the logs page and the
audit log. Tests share one signed-in owner (a TOTP code works once, so the module signs in once)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from lettr import Lettr
from lettr._exceptions import AuthenticationError, ForbiddenError
from sqlalchemy import Connection, select

from postroom.auth.keys import generate_key
from postroom.domains.service import SendingDomain
from postroom.models import api_keys, audit_log
from tests.browser.conftest import Account, same_server, screenshot, setup_link
from tests.conftest import Backend, Server, bearer, http_from

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

OWNER = Account(email="owner@dashboard.test")
PHONE = {"width": 390, "height": 844}


def next_code(secret: str) -> str:
    """A code for the next 30 s step: valid now (one step of drift is allowed) and later than any used so far."""
    return pyotp.TOTP(secret).at(time.time() + 30)


@pytest.fixture(scope="module")
def owner(browser: Any, server: Server, backend: Backend) -> Iterator[dict[str, Any]]:
    """The operator's setup link → password → 2FA enrolment → sign out → sign in with password and code."""
    facts: dict[str, Any] = {}
    context = browser.new_context(base_url=server.base_url)
    page = context.new_page()
    page.goto(same_server(setup_link(backend, OWNER.email), server))
    page.fill("input[name=password]", OWNER.password)
    page.fill("input[name=password_again]", OWNER.password)
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/account/2fa"))
    page.click("text=Set up two-factor authentication")
    OWNER.totp_secret = page.inner_text("#totp-secret").strip()
    facts["qr_is_svg"] = page.locator(".qr svg").count() == 1
    screenshot(page, "2fa-setup")
    page.fill("input[name=code]", pyotp.TOTP(OWNER.totp_secret).now())
    page.click("text=Turn on")
    OWNER.recovery_codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    screenshot(page, "2fa-recovery-codes")
    page.click("text=Continue")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/login"))

    page.fill("input[name=email]", OWNER.email)
    page.fill("input[name=password]", OWNER.password)
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/login/2fa"))
    facts["asked_for_code"] = True
    code = next_code(OWNER.totp_secret)
    page.fill("input[name=code]", code)
    page.click("text=Verify")
    page.wait_for_url(server.base_url + "/")
    facts["used_code"] = code
    facts["cookies"] = context.cookies()
    yield {"context": context, "page": page, "facts": facts}
    context.close()


def test_owner_enrols_2fa_and_signs_in_with_it(owner: dict[str, Any], browser: Any, server: Server) -> None:
    facts, page = owner["facts"], owner["page"]
    assert facts["qr_is_svg"] and facts["asked_for_code"]
    assert len(OWNER.recovery_codes) == 10 and all(
        re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", c) for c in OWNER.recovery_codes
    )
    assert page.locator("header .who").inner_text().startswith(OWNER.email)
    session_cookie = [c for c in facts["cookies"] if c["name"] == "postroom_session"]
    assert session_cookie and session_cookie[0]["httpOnly"] and session_cookie[0]["sameSite"] == "Lax"
    screenshot(page, "overview")

    # The same code a second time, in a fresh sign-in, is refused (RFC 6238 §5.2); a recovery code works once.
    other = browser.new_context(base_url=server.base_url)
    second = other.new_page()
    second.goto("/login")
    second.fill("input[name=email]", OWNER.email)
    second.fill("input[name=password]", OWNER.password)
    second.click("button.primary")
    second.wait_for_url(re.compile(r"/login/2fa"))
    second.fill("input[name=code]", facts["used_code"])
    second.click("text=Verify")
    assert "not valid (or was already used)" in second.inner_text("main")
    second.fill("input[name=code]", OWNER.recovery_codes[0])
    second.click("text=Verify")
    second.wait_for_url(server.base_url + "/")
    other.close()


def test_a_viewer_cannot_reach_key_management_even_with_a_forged_post(
    owner: dict[str, Any], browser: Any, server: Server, backend: Backend
) -> None:
    page = owner["page"]
    page.goto("/team")
    page.fill("#invite input[name=email]", "viewer@dashboard.test")
    page.select_option("#invite select[name=role]", "viewer")
    page.click("#invite button")
    link = page.input_value("#invite-link")
    screenshot(page, "team-invitation")

    viewer = browser.new_context(base_url=server.base_url)
    vpage = viewer.new_page()
    vpage.goto(link)
    vpage.fill("input[name=password]", "viewer's own long password")
    vpage.fill("input[name=password_again]", "viewer's own long password")
    vpage.click("button.primary")
    vpage.wait_for_url(re.compile(r"/account/2fa"))
    vpage.goto("/")
    assert "API Keys" not in vpage.locator("header nav").inner_text()

    response = vpage.goto("/settings/api-keys")
    assert response is not None and response.status == 403
    assert "needs the Developer role" in vpage.inner_text("main")

    # A hand-made form post with the viewer's own valid CSRF token: refused by the server, nothing created.
    token = vpage.locator("header input[name=_csrf]").first.input_value()
    forged = vpage.request.post(
        "/settings/api-keys",
        form={"_csrf": token, "name": "forged by viewer", "permission": "full", "allowed_ips": ""},
        headers={"Origin": server.base_url},
    )
    assert forged.status == 403
    some_key = backend.create_key(name="target of a forged revoke")
    forged_revoke = vpage.request.post(
        f"/settings/api-keys/{some_key.record.id}/revoke", form={"_csrf": token}, headers={"Origin": server.base_url}
    )
    assert forged_revoke.status == 403
    assert backend.get_key(some_key.record.id).revoked_at is None
    names = backend.read(lambda conn: list(conn.execute(select(api_keys.c.name)).scalars()))
    assert "forged by viewer" not in names
    # Without the token the post is refused before the role is even looked at.
    assert vpage.request.post("/settings/api-keys", form={"name": "x"}).status == 403
    viewer.close()


def _create_key_in_ui(page: Any, *, name: str, permission: str, allowed_ips: str) -> str:
    page.goto("/settings/api-keys")
    page.fill("#create-key input[name=name]", name)
    page.check(f"#create-key input[name=permission][value={permission}]")
    page.fill("#create-key input[name=allowed_ips]", allowed_ips)
    page.click("#create-key button.primary")
    if page.locator("input[name=reauth_password]").count():  # Full Access needs a fresh confirmation
        page.fill("input[name=reauth_password]", OWNER.password)
        page.click("text=Confirm and continue")
    key = str(page.input_value("#new-key"))
    assert key.startswith("lttr_")
    return key


def _key_id(backend: Backend, key: str) -> str:
    return str(
        backend.read(
            lambda conn: conn.execute(select(api_keys.c.id).where(api_keys.c.display_prefix == key[:12])).scalar_one()
        )
    )


def _send(client: Lettr) -> Any:
    return client.emails.send(from_email="app@sender.test", to=["someone@example.test"], subject="Hi", text="Hello")


def test_a_sending_only_key_restricted_to_an_ip_works_only_from_there(
    owner: dict[str, Any], server: Server, backend: Backend, sending_domain: SendingDomain
) -> None:
    page = owner["page"]
    page.goto("/settings/api-keys")
    page.fill("#create-key input[name=allowed_ips]", "10.0.0.1/24")
    page.wait_for_selector("#ips-feedback .error")
    assert "did you mean 10.0.0.0/24" in page.inner_text("#ips-feedback")
    page.fill("#create-key input[name=allowed_ips]", "127.0.0.1")
    page.wait_for_selector("#ips-feedback .ok")
    screenshot(page, "api-keys-create")

    key = _create_key_in_ui(page, name="Mailer on 127.0.0.1", permission="sending", allowed_ips="127.0.0.1")
    screenshot(page, "api-key-shown-once")
    page.goto("/settings/api-keys")
    assert key not in page.content()  # shown once, never again
    row = page.locator("#keys tr", has_text="Mailer on 127.0.0.1")
    assert "Sending Only" in row.inner_text() and "127.0.0.1" in row.inner_text()

    client = Lettr(key, base_url=server.api_url)  # the SDK connects from 127.0.0.1
    assert _send(client).request_id
    with pytest.raises(ForbiddenError) as excinfo:
        client.projects.list()
    assert excinfo.value.error_code == "insufficient_scope"
    with http_from("127.0.0.2") as other:
        refused = other.post(
            server.api_url + "/emails",
            headers=bearer(key),
            json={"from": "app@sender.test", "to": ["someone@example.test"], "subject": "Hi", "text": "x"},
        )
    assert refused.status_code == 403
    assert refused.json() == {"message": "Access denied. Your IP address is not allowed."}

    # Move the allowlist to 127.0.0.2 in the UI: the SDK's address is refused, the other one may send.
    page.goto(f"/settings/api-keys/{_key_id(backend, key)}")
    page.fill("#edit-key input[name=allowed_ips]", "127.0.0.2")
    page.click("#edit-key button.primary")
    assert "applies to its very next request" in page.inner_text("main")
    with pytest.raises(ForbiddenError, match="IP address is not allowed"):
        _send(client)
    with http_from("127.0.0.2") as other:
        sent = other.post(
            server.api_url + "/emails",
            headers=bearer(key),
            json={"from": "app@sender.test", "to": ["someone@example.test"], "subject": "Hi", "text": "x"},
        )
    assert sent.status_code == 200, sent.text


def test_downgrade_and_revoke_in_the_ui_apply_to_the_next_api_request(
    owner: dict[str, Any], server: Server, backend: Backend, sending_domain: SendingDomain
) -> None:
    page = owner["page"]
    key = _create_key_in_ui(page, name="Backend full", permission="full", allowed_ips="")
    client = Lettr(key, base_url=server.api_url)
    assert client.projects.list() is not None

    page.goto(f"/settings/api-keys/{_key_id(backend, key)}")
    page.check("#edit-key input[name=permission][value=sending]")
    page.click("#edit-key button.primary")
    with pytest.raises(ForbiddenError) as excinfo:
        client.projects.list()
    assert excinfo.value.error_code == "insufficient_scope"
    assert _send(client).request_id
    screenshot(page, "api-key-edit")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#revoke-key button")
    page.wait_for_url(re.compile(r"/settings/api-keys\?notice=key-revoked"))
    with pytest.raises(AuthenticationError, match="Invalid API key."):
        _send(client)
    screenshot(page, "api-keys")


def test_failed_api_authentications_and_alerts_appear_on_the_logs_page(
    owner: dict[str, Any], server: Server, backend: Backend
) -> None:
    page = owner["page"]
    key = _create_key_in_ui(page, name="Soon revoked", permission="sending", allowed_ips="")
    page.goto(f"/settings/api-keys/{_key_id(backend, key)}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#revoke-key button")
    page.wait_for_url(re.compile(r"notice=key-revoked"))

    unknown = generate_key()
    with http_from("127.0.0.3") as caller:
        assert caller.get(server.api_url + "/auth/check", headers=bearer(unknown)).status_code == 401
    with http_from("127.0.0.4") as caller:  # a revoked key that keeps being tried: 5 attempts trip the alert
        for _ in range(5):
            assert caller.get(server.api_url + "/auth/check", headers=bearer(key)).status_code in (401, 429)

    roaming = backend.create_key(name="Roaming key")
    for source in ("127.0.0.1", "127.0.0.5"):
        with http_from(source) as caller:
            assert caller.get(server.api_url + "/auth/check", headers=bearer(roaming.key)).status_code == 200
        deadline = time.monotonic() + 10  # last use is written in the background, after the answer
        while backend.get_key(roaming.record.id).last_used_ip != source and time.monotonic() < deadline:
            time.sleep(0.05)

    page.goto("/logs")
    sightings = page.locator("#new-ips tr", has_text="Roaming key").all_inner_texts()
    assert any("127.0.0.1" in row and "first use" in row for row in sightings), sightings
    assert any("127.0.0.5" in row and "new address" in row for row in sightings), sightings
    failures = page.inner_text("#auth-failures")
    assert unknown[:12] in failures and "127.0.0.3" in failures and "unknown key" in failures
    assert key[:12] in failures and "127.0.0.4" in failures and "revoked key" in failures
    assert f"The revoked or expired key {key[:12]}… was tried 5 times" in page.inner_text("main")
    assert "Soon revoked" in page.inner_text("#new-keys")
    screenshot(page, "logs")


def test_every_action_is_in_the_audit_log_which_cannot_be_changed(
    owner: dict[str, Any], server: Server, backend: Backend
) -> None:
    page = owner["page"]
    page.goto("/audit")
    screenshot(page, "audit-log")
    text = page.inner_text("#audit")
    for action in (
        "member.setup_link_created",
        "user.created",
        "member.added",
        "user.2fa_enabled",
        "session.signed_in",
        "session.2fa_failed",
        "user.recovery_code_used",
        "member.invited",
        "access.denied",
        "api_key.created",
        "api_key.updated",
        "api_key.revoked",
    ):
        assert action in text, action
    moved = page.locator("#audit tr", has_text="api_key.updated").filter(has_text='"allowed_ips":"127.0.0.2"')
    row = moved.first.inner_text()
    assert '{"allowed_ips":"127.0.0.1"}' in row and OWNER.email in row  # the old and new allowlist, the actor
    downgrade = page.locator("#audit tr", has_text='{"permission":"sending"}').first.inner_text()
    assert '{"permission":"full"}' in downgrade
    denied = page.locator("#audit tr", has_text="access.denied").first.inner_text()
    assert "viewer@dashboard.test" in denied and "POST /settings/api-keys" in denied

    def tamper(conn: Connection) -> None:
        conn.execute(audit_log.update().values(actor="someone else"))

    with pytest.raises(Exception, match="append-only"):
        backend.write(tamper)


def test_main_pages_fit_a_phone_screen(owner: dict[str, Any], browser: Any, server: Server) -> None:
    phone = browser.new_context(
        base_url=server.base_url, viewport=PHONE, storage_state=owner["context"].storage_state()
    )
    page = phone.new_page()
    for path in (
        "/",
        "/emails",
        "/domains",
        "/templates",
        "/webhooks",
        "/logs",
        "/settings/api-keys",
        "/team",
        "/audit",
        "/account",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
        screenshot(page, "phone" + (path.replace("/", "-") if path != "/" else "-overview"))
    phone.close()


def test_a_template_made_with_the_api_is_edited_and_previewed_in_the_dashboard(
    owner: dict[str, Any], server: Server, backend: Backend
) -> None:
    client = Lettr(backend.create_key().key, base_url=server.api_url)
    made = client.templates.create(name="Welcome mail", html="<p>Hello {{name}}</p>")
    page = owner["page"]
    page.goto("/templates")
    page.click("text=Welcome mail")
    page.fill("#template-editor textarea[name=html]", "<h1>Welcome, {{name}}!</h1><script>alert(1)</script>")
    page.fill("#template-editor input[name=subject]", "Welcome aboard")
    page.click("#template-editor button.primary")
    assert "saved as a new version" in page.inner_text("main")
    preview = page.frame_locator("iframe.preview")
    assert preview.locator("h1").inner_text() == "Welcome, {{name}}!"
    assert page.locator("iframe.preview").get_attribute("sandbox") == ""  # no scripts in the preview
    screenshot(page, "template-editor")
    stored = client.templates.get(made.slug)
    assert stored.active_version == 2
    page.goto("/audit?action=template.")
    assert "template.updated" in page.inner_text("#audit")


def test_webhook_endpoints_are_listed_with_their_delivery_log(
    owner: dict[str, Any], server: Server, backend: Backend
) -> None:
    client = Lettr(backend.create_key().key, base_url=server.api_url)
    hook = client.webhooks.create(
        name="Order events", url="https://93.184.215.14/postroom", auth_type="none", events_mode="all"
    )
    page = owner["page"]
    page.goto("/webhooks")
    assert "https://93.184.215.14/postroom" in page.inner_text("#webhooks")
    page.click("text=Order events")
    assert page.url.endswith(f"/webhooks/{hook.id}")
    assert "No deliveries yet." in page.inner_text("#deliveries")
    screenshot(page, "webhooks")
