"""Re-authentication that cannot be skipped, and the audit trail of dashboard changes, over a real HTTP session on
both engines: allowlists that parse to nothing or open every address, rotating a Full Access key, an abandoned
2FA set-up, failed re-confirmations, the audit page's CSV and JSON export, and the Logs page's new keys.

A session is made stale the way time would: its ``authenticated_at`` is moved back past the 5-minute window."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from postroom.apikeys import service as keys_service
from postroom.audit import service as audit
from postroom.auth import totp
from postroom.core.clock import utcnow
from postroom.models import dashboard_sessions, users
from tests.conftest import Backend
from tests.e2e.test_dashboard import PASSWORD, client, csrf_of, member, sign_in

__all__ = ["client", "member"]  # fixtures


def age_sessions(backend: Backend, email: str) -> None:
    """Every session of ``email`` last proved its password 10 minutes ago."""
    then = utcnow() - timedelta(minutes=10)

    def age(conn: Any) -> None:
        user_id = conn.execute(select(users.c.id).where(users.c.email == email)).scalar_one()
        conn.execute(
            update(dashboard_sessions).where(dashboard_sessions.c.user_id == user_id).values(authenticated_at=then)
        )

    backend.write(age)


def entries(backend: Backend, action: str, actor: str) -> list[audit.AuditEntry]:
    listed = backend.read(
        lambda conn: audit.list_entries(conn, team_id=backend.team_id, action_prefix=action, actor_contains=actor)
    )
    return [entry for entry in listed if entry.actor == actor]


def new_key(backend: Backend, client: httpx.Client, *, name: str, permission: str, allowed_ips: str = "") -> str:
    page = client.get("/settings/api-keys")
    form = {"_csrf": csrf_of(page.text), "name": name, "permission": permission, "allowed_ips": allowed_ips}
    created = client.post("/settings/api-keys", data=form)
    assert created.status_code == 200, created.text
    found = backend.read(lambda conn: keys_service.list_keys(conn, team_id=backend.team_id))
    return next(k.id for k in found if k.name == name)


def edit(client: httpx.Client, key_id: str, **fields: str) -> httpx.Response:
    page = client.get(f"/settings/api-keys/{key_id}")
    return client.post(f"/settings/api-keys/{key_id}", data={"_csrf": csrf_of(page.text), **fields})


def test_an_allowlist_that_parses_to_nothing_is_refused_and_stores_nothing(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    key_id = new_key(backend, client, name=f"commas {member}", permission="sending", allowed_ips="127.0.0.1")
    refused = edit(client, key_id, name=f"commas {member}", permission="sending", allowed_ips=" , ,")
    assert refused.status_code == 422
    assert "The list has no address in it" in refused.text
    assert backend.get_key(key_id).allowed_ips == "127.0.0.1"
    page = client.get("/settings/api-keys")
    on_create = client.post(
        "/settings/api-keys",
        data={"_csrf": csrf_of(page.text), "name": f"new {member}", "permission": "sending", "allowed_ips": ","},
    )
    assert on_create.status_code == 422 and "The list has no address in it" in on_create.text
    # The command line refuses it the same way (exit 2, one line naming the field).
    from tests.conftest import run_cli

    result = run_cli(backend, "keys", "update", key_id, "--allowed-ips", ",")
    assert result.returncode == 2 and result.stderr.startswith("postroom: error: allowed-ips: The list has no")


def test_opening_a_key_to_every_address_needs_a_fresh_password(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    name = f"fenced {member}"
    key_id = new_key(backend, client, name=name, permission="sending", allowed_ips="127.0.0.1")
    age_sessions(backend, member)
    for wide in ("0.0.0.0/0, ::/0", "127.0.0.1, ::/0", ""):
        asked = edit(client, key_id, name=name, permission="sending", allowed_ips=wide)
        assert asked.status_code == 403 and 'name="reauth_password"' in asked.text, wide
        assert backend.get_key(key_id).allowed_ips == "127.0.0.1"
    # A narrowing change does not ask.
    narrowed = edit(client, key_id, name=name, permission="sending", allowed_ips="127.0.0.1, 127.0.0.2")
    assert narrowed.status_code == 303
    # With the password, the widening is made and recorded with the list before and after.
    asked = edit(client, key_id, name=name, permission="sending", allowed_ips="0.0.0.0/0, ::/0")
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', asked.text))
    confirmed = client.post(f"/settings/api-keys/{key_id}", data={**fields, "reauth_password": PASSWORD})
    assert confirmed.status_code == 303, confirmed.text
    assert backend.get_key(key_id).allowed_ips == "0.0.0.0/0, ::/0"
    [change, _] = entries(backend, "api_key.updated", member)[:2]
    assert json.loads(change.old_value or "") == {"allowed_ips": "127.0.0.1, 127.0.0.2"}
    assert json.loads(change.new_value or "") == {"allowed_ips": "0.0.0.0/0, ::/0"}


def test_rotating_a_full_access_key_needs_a_fresh_password_and_a_wrong_one_is_audited(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    key_id = new_key(backend, client, name=f"full {member}", permission="full")
    age_sessions(backend, member)
    page = client.get(f"/settings/api-keys/{key_id}")
    rotate = {"_csrf": csrf_of(page.text), "grace_hours": "1"}
    asked = client.post(f"/settings/api-keys/{key_id}/rotate", data=rotate)
    assert asked.status_code == 403 and 'name="reauth_password"' in asked.text
    assert "lttr_" not in asked.text

    def successors() -> list[str]:
        keys = backend.read(lambda conn: keys_service.list_keys(conn, team_id=backend.team_id))
        return [k.id for k in keys if k.rotated_from_id == key_id]

    assert successors() == []
    wrong = client.post(f"/settings/api-keys/{key_id}/rotate", data={**rotate, "reauth_password": "not my password"})
    assert wrong.status_code == 403 and successors() == []
    [failure] = entries(backend, "session.reauthentication_failed", member)
    assert json.loads(failure.new_value or "") == {
        "method": "password",
        "for": "Rotating a Full Access key (a new Full Access secret)",
    }
    assert failure.actor_ip == "127.0.0.1"
    done = client.post(f"/settings/api-keys/{key_id}/rotate", data={**rotate, "reauth_password": PASSWORD})
    assert done.status_code == 200 and "lttr_" in done.text
    [successor] = successors()
    [rotated] = entries(backend, "api_key.rotated", member)
    assert json.loads(rotated.new_value or "")["successor"] == successor
    # A Sending Only key rotates without the question.
    sending = new_key(backend, client, name=f"sending {member}", permission="sending")
    age_sessions(backend, member)
    page = client.get(f"/settings/api-keys/{sending}")
    plain = client.post(f"/settings/api-keys/{sending}/rotate", data={"_csrf": csrf_of(page.text), "grace_hours": "0"})
    assert plain.status_code == 200 and "lttr_" in plain.text


def test_an_abandoned_2fa_set_up_is_no_second_factor_and_is_hidden_from_a_stale_session(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    page = client.get("/account/2fa")
    started = client.post("/account/2fa/start", data={"_csrf": csrf_of(page.text)})
    assert started.status_code == 303
    fresh_page = client.get("/account/2fa")
    secret = re.search(r'data-secret="([A-Z2-7]+)"', fresh_page.text)
    assert secret, "a fresh session sees the seed it just made"
    seed = secret.group(1)
    age_sessions(backend, member)

    stale_page = client.get("/account/2fa")
    assert stale_page.status_code == 200 and seed not in stale_page.text and "data-secret" not in stale_page.text
    # The pending seed's code does not re-authenticate a sensitive change.
    key_id = new_key(backend, client, name=f"2fa {member}", permission="sending")
    page = client.get(f"/settings/api-keys/{key_id}")
    code = totp.code_at_step(seed, totp.step_at(utcnow()))
    upgrade = {"_csrf": csrf_of(page.text), "name": f"2fa {member}", "permission": "full", "allowed_ips": ""}
    refused = client.post(f"/settings/api-keys/{key_id}", data={**upgrade, "reauth_code": code})
    assert refused.status_code == 403 and 'name="reauth_password"' in refused.text
    assert backend.get_key(key_id).permission.value == "sending"
    # Confirming the set-up from the stale session asks for the password first.
    confirm = client.post("/account/2fa/confirm", data={"_csrf": csrf_of(stale_page.text), "code": code})
    assert confirm.status_code == 403 and 'name="reauth_password"' in confirm.text

    def enabled() -> bool:
        row = backend.read(lambda conn: conn.execute(select(users).where(users.c.email == member)).one())
        return row.totp_enabled_at is not None

    assert not enabled()
    [failure] = entries(backend, "session.reauthentication_failed", member)
    assert json.loads(failure.new_value or "")["method"] == "totp"
    # Nothing else was wrong with the seed: with the password, the same set-up completes.
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm.text))
    assert fields["code"] == code
    done = client.post("/account/2fa/confirm", data={**fields, "reauth_password": PASSWORD})
    assert done.status_code == 200 and "recovery" in done.text.lower(), done.text
    assert enabled()


def test_the_audit_page_exports_what_its_filters_show_as_csv_and_json(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    key_id = new_key(backend, client, name=f"export {member}", permission="sending")
    edit(client, key_id, name=f"export {member} renamed", permission="sending", allowed_ips="")
    page = client.get("/audit", params={"action": "api_key.", "actor": member})
    assert page.status_code == 200
    link = re.search(r'id="export-csv" href="([^"]+)"', page.text)
    assert link
    as_csv = client.get(link.group(1).replace("&amp;", "&"))
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"].startswith('attachment; filename="postroom-audit-')
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["action"], r["target"]) for r in rows] == [
        ("api_key.updated", f"api_key:{key_id}"),
        ("api_key.created", f"api_key:{key_id}"),
    ]
    assert {r["actor"] for r in rows} == {member} and rows[0]["actor_ip"] == "127.0.0.1"
    assert json.loads(rows[0]["new_value"]) == {"name": f"export {member} renamed"}
    as_json = client.get("/audit/export", params={"format": "json", "action": "api_key.", "actor": member})
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    assert [(e["id"], e["action"]) for e in as_json.json()] == [(int(r["id"]), r["action"]) for r in rows]
    assert client.get("/audit/export", params={"format": "xml"}).status_code == 422


def test_the_logs_page_shows_each_new_keys_permission_as_created_and_its_status_now(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    names = {status: f"{status} {member}" for status in ("active", "upgraded", "revoked", "rotated")}
    ids = {status: new_key(backend, client, name=name, permission="sending") for status, name in names.items()}
    edit(client, ids["upgraded"], name=names["upgraded"], permission="full", allowed_ips="")
    page = client.get(f"/settings/api-keys/{ids['revoked']}")
    client.post(f"/settings/api-keys/{ids['revoked']}/revoke", data={"_csrf": csrf_of(page.text)})
    page = client.get(f"/settings/api-keys/{ids['rotated']}")
    client.post(f"/settings/api-keys/{ids['rotated']}/rotate", data={"_csrf": csrf_of(page.text), "grace_hours": "1"})
    [revoked] = entries(backend, "api_key.revoked", member)
    assert revoked.target == f"api_key:{ids['revoked']}"
    assert json.loads(revoked.old_value or "") == {"status": "active"}
    logs = client.get("/logs")
    assert logs.status_code == 200
    table = logs.text[logs.text.index('id="new-keys"') :]

    def rows_of(name: str) -> list[str]:
        starts = [m.start() for m in re.finditer(re.escape(f"<td>{name}</td>"), table)]
        return [table[start : table.index("</tr>", start)] for start in starts]

    def row_of(name: str) -> str:
        [row] = rows_of(name)
        return row

    def cell(row: str, css: str) -> str:
        match = re.search(rf'<td class="{css}">(.*?)</td>', row)
        assert match, row
        return re.sub(r"<[^>]+>", "", match.group(1)).strip()

    assert (cell(row_of(names["active"]), "permission"), cell(row_of(names["active"]), "status")) == (
        "Sending Only",
        "active",
    )
    upgraded = row_of(names["upgraded"])
    assert cell(upgraded, "permission") == "Sending Only (now Full Access)" and cell(upgraded, "status") == "active"
    assert cell(row_of(names["revoked"]), "status") == "revoked"
    # The rotated key and its successor (same name, newest first).
    assert [cell(row, "status") for row in rows_of(names["rotated"])] == ["active", "rotated"]


def test_a_wrong_current_password_when_changing_it_is_audited(
    backend: Backend, client: httpx.Client, member: str
) -> None:
    sign_in(client, member)
    page = client.get("/account")
    form = {"_csrf": csrf_of(page.text), "current_password": "not it", "new_password": "x" * 20,
            "new_password_again": "x" * 20}  # fmt: skip
    assert client.post("/account/password", data=form).status_code == 422
    [failure] = entries(backend, "session.reauthentication_failed", member)
    assert json.loads(failure.new_value or "") == {"method": "password", "for": "Changing the password"}
