"""The audit trail from every door, on both engines: CLI commands (run as the operator would, in their own
process) and API requests (through the official SDK and httpx against the live server) land in the same
hash-chained log, read back with ``postroom audit list --json``; ``postroom audit verify`` passes an intact chain
and names the entry someone edited in the database."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import httpx
from lettr import Lettr
from sqlalchemy import Connection, insert, text, update

from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.models import audit_log, webhook_batches
from tests.conftest import Backend, Server, bearer, run_cli
from tests.support.dns_server import DnsServer
from tests.system.cluster import ensure_sending_domain

HOOK_PASSWORD = "basic-auth-" + "p4ssw0rd-never-logged"  # noqa: S105 - a test credential


def audit_list(backend: Backend, *args: str) -> list[dict[str, Any]]:
    """``postroom audit list --json`` with ``args``, as the operator runs it."""
    result = run_cli(backend, "audit", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def by_action(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        grouped.setdefault(entry["action"], []).append(entry)
    return grouped


def values(entry: dict[str, Any]) -> tuple[Any, Any]:
    old, new = entry["old_value"], entry["new_value"]
    return (None if old is None else json.loads(old)), (None if new is None else json.loads(new))


def new_team(backend: Backend) -> int:
    from postroom.teams import queries as team_queries
    from postroom.templates import service as templates_service

    def create(conn: Connection) -> int:
        now = utcnow()
        team_id = int(team_queries.insert_team(conn, "Audited team", now))
        project_id = team_queries.insert_project(conn, team_id, "Audited project", is_default=True, now=now)
        templates_service.create_default_folders(conn, team_id=team_id, project_id=project_id, now=now)
        return team_id

    return backend.write(create)


# -- the command line -----------------------------------------------------------------------------------------


def test_cli_changes_are_audited_as_the_operator_without_secrets(backend: Backend) -> None:
    name = f"cli-audit-{secrets.token_hex(4)}"
    created = run_cli(backend, "keys", "create", "--name", name, "--permission", "sending", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    key_id, secret = key["id"], key["key"]
    assert (
        run_cli(backend, "keys", "update", key_id, "--permission", "full", "--allowed-ips", "127.0.0.1").returncode == 0
    )
    rotated = run_cli(backend, "keys", "rotate", key_id, "--grace-hours", "1", "--json")
    assert rotated.returncode == 0, rotated.stderr
    successor = json.loads(rotated.stdout)
    assert run_cli(backend, "keys", "revoke", successor["id"]).returncode == 0
    domain = f"{name}.test"
    assert run_cli(backend, "domains", "add", domain).returncode == 0
    assert run_cli(backend, "domains", "approve", domain).returncode == 0
    approved_at_once = f"now-{domain}"
    assert run_cli(backend, "domains", "add", approved_at_once, "--approve").returncode == 0
    assert run_cli(backend, "domains", "rotate-dkim", domain).returncode == 0
    from postroom.emails import service as emails_service

    bounced = f"{name}@example.test"
    backend.write(
        lambda conn: emails_service.suppress(
            conn, team_id=backend.team_id, email=bounced, reason="hard_bounce", source="test", now=utcnow()
        )
    )
    assert run_cli(backend, "suppressions", "remove", bounced).returncode == 0

    operator = Actor.operator().name  # what the CLI records: cli:<user>@<host>
    assert operator.startswith("cli:") and "@" in operator
    entries = [e for e in audit_list(backend, "--actor", operator, "--since", "10m") if e["actor"] == operator]
    mine = [e for e in entries if e["target"] in (f"api_key:{key_id}", f"api_key:{successor['id']}")]
    actions = [e["action"] for e in mine]
    assert actions == ["api_key.created", "api_key.updated", "api_key.rotated", "api_key.revoked"]
    grouped = by_action(mine)
    assert values(grouped["api_key.created"][0]) == (
        None,
        {"name": name, "permission": "sending", "allowed_ips": None, "prefix": key["display_prefix"],
         "expires_at": None},
    )  # fmt: skip
    assert values(grouped["api_key.updated"][0]) == (
        {"permission": "sending", "allowed_ips": None},
        {"permission": "full", "allowed_ips": "127.0.0.1"},
    )
    _, rotation = values(grouped["api_key.rotated"][0])
    assert rotation["successor"] == successor["id"] and rotation["prefix"] == successor["display_prefix"]
    assert values(grouped["api_key.revoked"][0]) == (
        {"status": "active"},
        {"status": "revoked", "prefix": successor["display_prefix"]},
    )
    domain_entries = [(e["action"], e["target"]) for e in entries if e["target"] and domain in e["target"]]
    assert domain_entries == [
        ("domain.added", f"domain:{domain}"),
        ("domain.approved", f"domain:{domain}"),
        ("domain.added", f"domain:{approved_at_once}"),
        ("domain.dkim_rotation_started", f"domain:{domain}"),
    ]
    [unsuppressed] = [e for e in entries if e["target"] == f"suppression:{bounced}"]
    assert (unsuppressed["action"], values(unsuppressed)) == (
        "suppression.removed",
        ({"suppressed": True}, {"suppressed": False}),
    )
    assert values([e for e in entries if e["target"] == f"domain:{approved_at_once}"][0])[1]["status"] == "approved"
    # Never a key: not the one created, not its successor.
    listing = run_cli(backend, "audit", "list").stdout
    assert secret not in listing and successor["key"] not in listing and key_id in listing


def test_audit_list_filters_by_actor_and_time_and_refuses_a_bad_since(backend: Backend) -> None:
    now = utcnow()
    marker = f"filter-{secrets.token_hex(4)}"

    def record(conn: Connection) -> None:
        from postroom.audit.service import Actor

        Actor(name=f"old-{marker}").record(
            conn, team_id=backend.team_id, action="test.old", target=None, now=now - timedelta(days=3)
        )
        Actor(name=f"New-{marker}").record(conn, team_id=backend.team_id, action="test.new", target=None, now=now)

    backend.write(record)
    assert [e["action"] for e in audit_list(backend, "--actor", marker)] == ["test.old", "test.new"]
    assert [e["action"] for e in audit_list(backend, "--actor", f"new-{marker}")] == ["test.new"]  # any case
    assert [e["action"] for e in audit_list(backend, "--actor", marker, "--since", "1d")] == ["test.new"]
    since = (now - timedelta(days=4)).isoformat()
    assert [e["action"] for e in audit_list(backend, "--actor", marker, "--since", since)] == ["test.old", "test.new"]
    refused = run_cli(backend, "audit", "list", "--since", "last tuesday")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--since" in refused.stderr


def test_audit_verify_passes_an_intact_chain_and_names_the_entry_edited_in_the_database(own_backend: Backend) -> None:
    assert run_cli(own_backend, "keys", "create", "--name", "one").returncode == 0
    assert run_cli(own_backend, "keys", "create", "--name", "two").returncode == 0
    assert run_cli(own_backend, "keys", "create", "--name", "three").returncode == 0
    intact = run_cli(own_backend, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.strip() == "ok, 3 entries"
    second = audit_list(own_backend)[1]["id"]

    def tamper(conn: Connection) -> None:  # what someone with raw database access might do
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(update(audit_log).where(audit_log.c.id == second).values(actor="someone else"))

    own_backend.write(tamper)
    broken = run_cli(own_backend, "audit", "verify")
    assert broken.returncode == 1 and broken.stdout == ""
    assert f"audit log broken at entry {second}:" in broken.stderr


# -- the API --------------------------------------------------------------------------------------------------


def test_api_changes_are_audited_as_the_key_with_its_address(
    server: Server, backend: Backend, dns_server: DnsServer
) -> None:
    team = new_team(backend)
    created = backend.create_key(team_id=team, name="api audit")
    actor = f"api_key:{created.record.id} ({created.record.display_prefix})"
    lettr = Lettr(created.key, base_url=server.api_url)
    tag = secrets.token_hex(4)

    # domains: create, verify, rotate DKIM, delete
    domain = f"api-{tag}.test"
    lettr.domains.create(domain)
    lettr.domains.verify(domain)
    with httpx.Client(base_url=server.api_url, headers=bearer(created.key), timeout=10) as http:
        assert http.post(f"/domains/{domain}/dkim/rotate").status_code == 200
        lettr.domains.delete(domain)

        # webhooks: create with credentials, change them, rotate the secret, drop the previous one, replay, delete
        host = f"hook-{tag}.hooks.test"
        dns_server.add(host, "A", "93.184.216.34")
        hook = lettr.webhooks.create(
            name="audited", url=f"http://{host}/in", auth_type="basic", events_mode="all",
            auth_username="postroom", auth_password=HOOK_PASSWORD,
        )  # fmt: skip
        # Deliveries check the address again; rebound to loopback, a replay is refused without a connection.
        dns_server.remove(host)
        dns_server.add(host, "A", "127.0.0.1")
        lettr.webhooks.update(hook.id, name="audited, renamed", auth_password=HOOK_PASSWORD + "-2")
        lettr.webhooks.update(hook.id, auth_password=HOOK_PASSWORD + "-2")  # the same again: no change, no entry
        rotation = http.post(f"/webhooks/{hook.id}/rotate-secret", json={"overlap_hours": 2})
        assert rotation.status_code == 200, rotation.text
        new_secret = rotation.json()["data"]["signing_secret"]
        assert http.delete(f"/webhooks/{hook.id}/previous-secret").status_code == 200
        batch_id = f"wbatch_{tag}"
        backend.write(
            lambda conn: conn.execute(
                insert(webhook_batches).values(
                    id=batch_id, webhook_id=hook.id, team_id=team, status="failed", event_count=1, body="[]",
                    attempts=7, created_at=utcnow(), updated_at=utcnow(),
                )
            )
        )  # fmt: skip
        assert http.post(f"/webhooks/{hook.id}/deliveries/{batch_id}/replay").status_code == 202
        lettr.webhooks.delete(hook.id)

        # a suppression removed, templates created, changed and deleted, a scheduled send cancelled
        from postroom.emails import service as emails_service

        suppressed = f"bounced-{tag}@example.test"
        backend.write(
            lambda conn: emails_service.suppress(
                conn, team_id=team, email=suppressed, reason="hard_bounce", source="test", now=utcnow()
            )
        )
        assert http.delete(f"/suppressions/{suppressed}").status_code == 200
        template = lettr.templates.create(name=f"Audited {tag}", html="<p>Hi {{NAME}}</p>")
        lettr.templates.update(template.slug, name=f"Audited {tag} v2", html="<p>Hello {{NAME}}</p>")
        lettr.templates.delete(template.slug)
        ensure_sending_domain(backend, f"send-{tag}.test", team_id=team)
        scheduled = lettr.emails.schedule(
            from_email=f"news@send-{tag}.test", to=["later@example.test"], subject="Later", text="x",
            scheduled_at=utcnow() + timedelta(days=1),
        )  # fmt: skip
        lettr.emails.cancel_scheduled(scheduled.request_id)

    entries = audit_list(backend, "--actor", actor)
    assert {e["actor"] for e in entries} == {actor}
    assert {e["actor_ip"] for e in entries} == {"127.0.0.1"}
    assert {e["team_id"] for e in entries} == {team}
    assert [e["action"] for e in entries] == [
        "domain.added", "domain.verified", "domain.dkim_rotation_started", "domain.deleted",
        "webhook.created", "webhook.updated", "webhook.secret_rotated", "webhook.previous_secret_expired",
        "webhook.delivery_replayed", "webhook.deleted",
        "suppression.removed", "template.created", "template.updated", "template.deleted",
        "scheduled_email.cancelled",
    ]  # fmt: skip
    grouped = by_action(entries)
    _, hook_created = values(grouped["webhook.created"][0])
    assert hook_created["auth_type"] == "basic" and hook_created["has_auth_credentials"] is True
    assert values(grouped["webhook.updated"][0]) == (
        {"name": "audited", "credentials_changed": False},
        {"name": "audited, renamed", "credentials_changed": True},
    )
    assert values(grouped["webhook.delivery_replayed"][0])[1] == {"webhook": hook.id, "status": "failed"}
    assert grouped["webhook.delivery_replayed"][0]["target"] == f"webhook_delivery:{batch_id}"
    assert values(grouped["template.updated"][0]) == (
        {"name": f"Audited {tag}", "active_version": 1, "html_chars": 18},
        {"name": f"Audited {tag} v2", "active_version": 2, "html_chars": 21},
    )
    assert values(grouped["scheduled_email.cancelled"][0]) == ({"state": "scheduled"}, {"state": "cancelled"})
    assert grouped["suppression.removed"][0]["target"] == f"suppression:{suppressed}"
    # Sends are the email log, not audit events; and no secret is in any entry.
    everything = json.dumps(entries)
    assert "email.sent" not in everything
    for secret in (created.key, HOOK_PASSWORD, HOOK_PASSWORD + "-2", new_secret):
        assert secret not in everything
    assert run_cli(backend, "audit", "verify").returncode == 0
