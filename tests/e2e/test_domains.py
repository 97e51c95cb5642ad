"""Sending domains through the official SDK against a live Postroom whose DNS checks ask a real DNS server on
loopback: records verify only once served, wrong and missing records are reported, a disappearing record warns
and then stops sending, keys rotate, and mail is signed with the key DNS publishes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest
from lettr import Lettr
from lettr._exceptions import BadRequestError, ConflictError, NotFoundError, ValidationError
from sqlalchemy import Connection, select

from postroom.audit.service import Actor
from postroom.domains import service as domains_service
from postroom.domains.tasks import DomainChecks
from postroom.jobs.base import WorkKind
from postroom.models import work_items
from tests.conftest import Backend, Server, bearer, http_from, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink


@pytest.fixture
def client(server: Server, backend: Backend) -> Lettr:
    return Lettr(backend.create_key().key, base_url=server.api_url)


def fresh(kind: str = "apex") -> str:
    """A domain no other test uses: an apex (``x.test``) or a subdomain of one (``mail.x.test``)."""
    apex = f"d{secrets.token_hex(4)}.test"
    return apex if kind == "apex" else f"mail.{apex}"


def records_of(client: Lettr, domain: str) -> dict[str, dict[str, Any]]:
    detail = client.domains.get(domain)
    assert detail.dns is not None
    return {r["purpose"]: r for r in detail.dns["records"]}


def publish(dns_server: DnsServer, records: dict[str, dict[str, Any]], *purposes: str) -> None:
    for purpose in purposes:
        record = records[purpose]
        dns_server.add(record["name"], record["type"], record["value"])


def dns_lookup(dns_server: DnsServer) -> Any:
    """dkimpy's DNS hook, answered by the loopback DNS server (what any receiver would look up)."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        response = dns.query.tcp(query, "127.0.0.1", port=dns_server.port, timeout=timeout)
        return b"".join(b"".join(rdata.strings) for rrset in response.answer for rdata in rrset)

    return lookup


def test_a_new_domain_is_pending_with_its_records_to_publish(client: Lettr) -> None:
    name = fresh("sub")
    created = client.domains.create(name)
    assert (created.status, created.status_label) == ("pending", "Pending Review")
    assert created.dkim is not None and created.dkim.signing_domain == name
    assert created.dkim.headers == "from:to:subject:date"
    records = records_of(client, name)
    assert records["dkim"]["name"] == f"{created.dkim.selector}._domainkey.{name}"
    assert records["dkim"]["value"] == f"v=DKIM1; k=rsa; p={created.dkim.public}"
    assert records["return_path"] == {
        "purpose": "return_path",
        "type": "CNAME",
        "name": name,
        "value": "postroom.test",
        "status": None,
    }
    assert records["spf"]["value"] == "v=spf1 a:postroom.test ~all"
    assert records["dmarc"]["name"] == f"_dmarc.{name}"
    detail = client.domains.get(name)
    assert detail.can_send is False and detail.is_primary_domain is False
    assert (detail.dkim_status, detail.spf_status, detail.dmarc_status, detail.cname_status) == (None,) * 4
    assert name in [d.domain for d in client.domains.list()]


def test_registration_errors(client: Lettr) -> None:
    name = fresh()
    client.domains.create(name)
    with pytest.raises(ConflictError, match="This domain is already registered."):  # by this same team
        client.domains.create(name.upper())
    with pytest.raises(ValidationError, match=r"valid domain name"):
        client.domains.create("not a domain")
    with pytest.raises(NotFoundError, match="Domain not found."):
        client.domains.get(fresh())
    with pytest.raises(NotFoundError):
        client.domains.verify(fresh())


def test_a_domain_verifies_only_once_its_records_are_served(
    client: Lettr, dns_server: DnsServer, sink: SmtpSink
) -> None:
    name = fresh("sub")
    client.domains.create(name)
    before = client.domains.verify(name)
    assert (before.dkim_status, before.cname_status, before.spf_status, before.dmarc_status) == (
        "unverified",
        "unverified",
        "missing",
        "missing",
    )
    assert before.ownership_verified == "false"
    assert before.dns is not None and before.dns.dkim_error == "No DKIM record is published at this name."
    with pytest.raises(BadRequestError) as refused:
        client.emails.send(from_email=f"hi@{name}", to=["someone@example.test"], subject="x", text="x")
    assert refused.value.error_code == "unconfigured_domain"

    records = records_of(client, name)
    publish(dns_server, records, "dkim", "return_path", "spf")
    # DMARC at the organisational domain covers the subdomain (RFC 7489 §6.6.3).
    dns_server.add(f"_dmarc.{name.split('.', 1)[1]}", "TXT", "v=DMARC1; p=quarantine; sp=reject")
    after = client.domains.verify(name)
    assert (after.dkim_status, after.cname_status, after.spf_status, after.dmarc_status) == ("valid",) * 4
    assert after.ownership_verified == "true" and after.is_primary_domain is False
    assert after.dmarc is not None
    assert after.dmarc.found_at_domain == name.split(".", 1)[1] and after.dmarc.covered_by_parent_policy is True
    assert (after.dmarc.policy, after.dmarc.subdomain_policy) == ("quarantine", "reject")
    assert after.spf is not None and after.spf.includes_sparkpost is True
    detail = client.domains.get(name)
    assert (detail.status, detail.can_send) == ("approved", True)
    assert {r["status"] for r in records_of(client, name).values()} == {"valid"}

    # Mail from it is signed with the key DNS now serves.
    sink.clear()
    client.emails.send(from_email=f"hi@{name}", to=["someone@example.test"], subject="Signed", text="x")
    [received] = sink.wait_for(1)
    assert dkim.verify(received.data, dnsfunc=dns_lookup(dns_server))


def test_wrong_key_and_missing_dmarc_are_reported(client: Lettr, dns_server: DnsServer) -> None:
    name = fresh()
    client.domains.create(name)
    records = records_of(client, name)
    assert "return_path" not in records  # an apex cannot carry a CNAME
    other_key = records["dkim"]["value"][:-8] + "AAAAAAAA"
    dns_server.add(records["dkim"]["name"], "TXT", other_key)
    publish(dns_server, records, "spf")
    result = client.domains.verify(name)
    assert (result.dkim_status, result.cname_status, result.spf_status, result.dmarc_status) == (
        "invalid",
        "not_applicable",
        "valid",
        "missing",
    )
    assert result.is_primary_domain is True
    assert result.dns is not None
    assert result.dns.dkim_error == "The published key (p=) is not this domain's DKIM key."
    assert result.dns.dkim_record == other_key
    assert result.dns.dmarc_error == "No DMARC record (v=DMARC1) is published."
    assert result.dmarc is not None and result.dmarc.is_valid is False
    assert client.domains.get(name).status == "pending"

    dns_server.add(f"_dmarc.{name}", "TXT", "v=DMARC1; p=maybe")
    assert client.domains.verify(name).dmarc_status == "invalid"
    dns_server.add(f"_dmarc.{name}", "TXT", "v=DMARC1; p=none")
    assert client.domains.verify(name).dmarc_status == "invalid"  # two DMARC records: receivers ignore both
    dns_server.remove(f"_dmarc.{name}")
    dns_server.add(f"_dmarc.{name}", "TXT", "v=DMARC1; p=none")
    dns_server.remove(records["dkim"]["name"])
    publish(dns_server, records, "dkim")
    final = client.domains.verify(name)
    assert (final.dkim_status, final.dmarc_status) == ("valid", "valid")


def test_a_dns_failure_is_not_a_missing_record(client: Lettr, dns_server: DnsServer) -> None:
    name = fresh()
    client.domains.create(name)
    records = records_of(client, name)
    dns_server.set_failure(records["dkim"]["name"], "SERVFAIL")
    try:
        result = client.domains.verify(name)
    finally:
        dns_server.set_failure(records["dkim"]["name"], None)
    assert result.dkim_status == "unverified"
    assert result.dns is not None and result.dns.dkim_error is not None and "failed" in result.dns.dkim_error


def test_a_record_that_disappears_warns_then_stops_sending(
    client: Lettr, backend: Backend, dns_server: DnsServer, server: Server
) -> None:
    name = fresh()
    client.domains.create(name)
    records = records_of(client, name)
    publish(dns_server, records, "dkim")
    assert client.domains.verify(name).dkim_status == "valid"

    dns_server.remove(records["dkim"]["name"])
    gone = client.domains.verify(name)
    assert gone.dkim_status == "unverified"
    detail = client.domains.get(name)
    assert (detail.status, detail.can_send) == ("approved", True)  # still sending, with a warning
    assert detail.dns is not None and detail.dns["warning"]["since"]
    assert detail.dns["warning"]["sending_stops_at"]

    # A day later it is still gone: the check stops sending. (The clock is moved, the DNS answer is real.)
    domain = backend.read(lambda conn: domains_service.get_domain(conn, team_id=backend.team_id, name=name))
    assert domain.warning_since is not None
    checks = DomainChecks(backend.db, backend.settings)
    result = backend.loop.run(checks.lookup(domain))
    assert result.dkim.status == "missing"
    later = domain.warning_since + timedelta(hours=24, seconds=1)
    suspended = backend.write(
        lambda conn: domains_service.record_verification(
            conn, domain=domain, result=result, now=later, grace=timedelta(hours=24)
        )
    )
    assert (suspended.status, suspended.can_send) == ("pending", False)
    with pytest.raises(BadRequestError):
        client.emails.send(from_email=f"hi@{name}", to=["x@example.test"], subject="x", text="x")

    # Publishing the record again restores it.
    publish(dns_server, records, "dkim")
    assert client.domains.verify(name).dkim_status == "valid"
    restored = client.domains.get(name)
    assert (restored.status, restored.dns is not None and restored.dns["warning"]) == ("approved", None)
    events = backend.read(lambda conn: domains_service.domain_events(conn, team_id=backend.team_id, name=name))
    assert [e.type for e in reversed(events)] == [
        "added",
        "approved",
        "dkim_failing",
        "sending_suspended",
        "dkim_restored",
        "approved",
    ]


def test_an_operator_approved_domain_is_not_suspended_for_records_it_never_had(
    client: Lettr, backend: Backend, server: Server
) -> None:
    name = fresh()
    client.domains.create(name)
    backend.write(
        lambda conn: domains_service.approve_domain(
            conn, team_id=backend.team_id, name=name, actor=Actor(name="tests"), now=_now()
        )
    )
    assert client.domains.verify(name).dkim_status == "unverified"
    detail = client.domains.get(name)
    assert detail.can_send is True and detail.dns is not None and detail.dns["warning"] is None


def test_dkim_key_rotation(
    client: Lettr, server: Server, backend: Backend, dns_server: DnsServer, sink: SmtpSink
) -> None:
    name = fresh()
    created = client.domains.create(name)
    assert created.dkim is not None
    old_selector = created.dkim.selector
    publish(dns_server, records_of(client, name), "dkim")
    client.domains.verify(name)

    key = backend.create_key().key
    with http_from() as http:
        rotated = http.post(f"{server.api_url}/domains/{name}/dkim/rotate", headers=bearer(key))
        assert rotated.status_code == 200, rotated.text
        again = http.post(f"{server.api_url}/domains/{name}/dkim/rotate", headers=bearer(key))
        assert again.status_code == 409
    records = records_of(client, name)
    assert records["dkim"]["name"].startswith(f"{old_selector}.")
    new_name = records["dkim_next"]["name"]
    assert not new_name.startswith(f"{old_selector}.")

    # Not yet published: the old key keeps signing.
    assert client.domains.verify(name).dkim_status == "valid"
    assert client.domains.get(name).dkim_status == "valid"
    assert records_of(client, name)["dkim_next"]["status"] == "missing"

    publish(dns_server, records, "dkim_next")
    client.domains.verify(name)
    switched = records_of(client, name)
    assert switched["dkim"]["name"] == new_name and "dkim_next" not in switched
    assert switched["dkim_previous"]["name"].startswith(f"{old_selector}.")
    assert switched["dkim_previous"]["remove_after"]

    sink.clear()
    client.emails.send(from_email=f"hi@{name}", to=["someone@example.test"], subject="New key", text="x")
    [received] = sink.wait_for(1)
    assert f"s={new_name.split('.')[0]}".encode() in received.data.replace(b"\r\n", b"").replace(b" ", b"")
    assert dkim.verify(received.data, dnsfunc=dns_lookup(dns_server))


def test_delete_removes_the_domain(client: Lettr) -> None:
    name = fresh()
    client.domains.create(name)
    client.domains.delete(name)
    with pytest.raises(NotFoundError):
        client.domains.get(name)
    with pytest.raises(NotFoundError):
        client.domains.delete(name)
    client.domains.create(name)  # the name is free again


def test_an_unparsable_sender_domain_is_400_invalid_domain(client: Lettr) -> None:
    with pytest.raises(BadRequestError) as excinfo:
        client.emails.send(from_email="news@localhost", to=["x@example.test"], subject="x", text="x")
    assert excinfo.value.error_code == "invalid_domain"
    assert str(excinfo.value) == "The sender domain could not be determined from the email address."


def test_the_private_key_is_stored_sealed(client: Lettr, backend: Backend) -> None:
    name = fresh()
    client.domains.create(name)
    domain = backend.read(lambda conn: domains_service.get_domain(conn, team_id=backend.team_id, name=name))
    assert "PRIVATE KEY" not in domain.dkim_private_key
    assert domain.signing_key(backend.settings.server_secret).private_key_pem.startswith(b"-----BEGIN PRIVATE KEY")
    assert b"PRIVATE KEY-----" not in backend.dump()


@pytest.fixture
def rechecking_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer, smtp_sink: SmtpSink
) -> Iterator[Server]:
    env = {**mail_env(dns_server, smtp_sink), "POSTROOM_DOMAIN_RECHECK_INTERVAL": "1"}
    srv = Server(backend, tmp_path_factory.mktemp("recheck") / "server.log", env=env).start()
    yield srv
    srv.stop()


def test_the_periodic_check_approves_a_domain_once_its_record_appears(
    rechecking_server: Server, backend: Backend, dns_server: DnsServer
) -> None:
    client = Lettr(backend.create_key().key, base_url=rechecking_server.api_url)
    name = fresh()
    client.domains.create(name)
    domain = backend.read(lambda conn: domains_service.get_domain(conn, team_id=backend.team_id, name=name))

    def checks(conn: Connection) -> int:
        query = select(work_items).where(
            work_items.c.kind == WorkKind.VERIFY_DOMAIN.value, work_items.c.ref == domain.id
        )
        return len(conn.execute(query).fetchall())

    publish(dns_server, records_of(client, name), "dkim")
    deadline = time.monotonic() + 20
    while client.domains.get(name).status != "approved":
        assert time.monotonic() < deadline, "the periodic check never approved the domain"
        time.sleep(0.2)
    assert client.domains.get(name).dkim_status == "valid"
    assert backend.read(checks) >= 2  # each check queued the next


def _now() -> Any:
    from postroom.core.clock import utcnow

    return utcnow()


def test_the_command_line_verifies_rotates_and_shows(backend: Backend, dns_server: DnsServer) -> None:
    from tests.conftest import run_cli

    name = fresh()
    added = run_cli(backend, "domains", "add", name)
    assert added.returncode == 0, added.stderr
    assert "pending" in added.stdout and f"._domainkey.{name}  TXT  v=DKIM1; k=rsa; p=" in added.stdout
    domain = backend.read(lambda conn: domains_service.get_domain(conn, team_id=backend.team_id, name=name))
    dns_server.add(domain.dkim_record_name, "TXT", domain.dkim_public_key)
    env = {"POSTROOM_DNS_SERVER": dns_server.address}
    verified = run_cli(backend, "domains", "verify", name, env=env)
    assert verified.returncode == 0, verified.stderr
    assert f"{name}: approved, DKIM valid" in verified.stdout
    rotated = run_cli(backend, "domains", "rotate-dkim", name)
    assert rotated.returncode == 0 and "it signs once it verifies" in rotated.stdout
    shown = run_cli(backend, "domains", "show", name)
    assert "dkim_rotation_started" in shown.stdout and "approved: DNS serves the DKIM key" in shown.stdout
    missing = run_cli(backend, "domains", "verify", fresh())
    assert missing.returncode == 1 and "Domain not found." in missing.stderr


def test_maintenance_restarts_a_lost_chain_of_checks(client: Lettr, backend: Backend) -> None:
    from sqlalchemy import delete

    from postroom.system.maintenance import prune

    name = fresh()
    client.domains.create(name)
    domain = backend.read(lambda conn: domains_service.get_domain(conn, team_id=backend.team_id, name=name))
    is_check = (work_items.c.kind == WorkKind.VERIFY_DOMAIN.value) & (work_items.c.ref == domain.id)

    def queued(conn: Connection) -> int:
        return len(conn.execute(select(work_items.c.id).where(is_check, work_items.c.status == "queued")).all())

    assert backend.read(queued) == 1
    backend.write(lambda conn: conn.execute(delete(work_items).where(is_check)))
    backend.write(lambda conn: prune(conn, backend.settings))
    assert backend.read(queued) == 1
    backend.write(lambda conn: prune(conn, backend.settings))
    assert backend.read(queued) == 1  # once is enough


def test_a_name_is_pending_in_any_team_but_approved_only_for_the_first_to_prove_its_dkim(
    server: Server, backend: Backend, dns_server: DnsServer, sink: SmtpSink
) -> None:
    from tests.conftest import run_cli
    from tests.system.cluster import new_team

    owner = Lettr(backend.create_key().key, base_url=server.api_url)
    squatter_team = new_team(backend)
    squatter_key = backend.create_key(team_id=squatter_team).key
    squatter = Lettr(squatter_key, base_url=server.api_url)
    name = fresh()

    # Someone else registering the name first neither locks the owner out nor tells the owner about it.
    assert squatter.domains.create(name).status == "pending"
    assert owner.domains.create(name).status == "pending"
    owner_records, squatter_records = records_of(owner, name), records_of(squatter, name)
    assert owner_records["dkim"]["name"] != squatter_records["dkim"]["name"]  # each team has its own selector

    publish(dns_server, owner_records, "dkim")
    assert squatter.domains.verify(name).dkim_status == "unverified"  # the owner's record proves nothing for others
    assert owner.domains.verify(name).dkim_status == "valid"
    assert owner.domains.get(name).status == "approved"

    # Even a second team whose own record is served stays pending, and hears nothing of the first.
    publish(dns_server, squatter_records, "dkim")
    with http_from() as http:
        answer = http.post(f"{server.api_url}/domains/{name}/verify", headers=bearer(squatter_key))
    assert answer.status_code == 200, answer.text
    verification = answer.json()["data"]
    assert (verification["dkim_status"], verification["status"]) == ("valid", "pending")
    assert verification["pending_reason"] == domains_service.APPROVAL_WITHHELD
    detail = squatter.domains.get(name)
    assert (detail.status, detail.can_send) == ("pending", False)
    assert detail.dns is not None and detail.dns["pending_reason"] == domains_service.APPROVAL_WITHHELD
    assert answer.json()["message"] == "Domain verification completed."
    assert not any(word in domains_service.APPROVAL_WITHHELD.lower() for word in ("team", "another", "already"))
    with pytest.raises(BadRequestError) as refused:
        squatter.emails.send(from_email=f"hi@{name}", to=["someone@example.test"], subject="x", text="x")
    assert refused.value.error_code == "unconfigured_domain"
    sink.clear()
    owner.emails.send(from_email=f"hi@{name}", to=["someone@example.test"], subject="Owner's", text="x")
    [received] = sink.wait_for(1)
    assert dkim.verify(received.data, dnsfunc=dns_lookup(dns_server))  # signed with the owner's own key

    # The operator is refused too, and told why.
    team_flag = ["--team", str(squatter_team)]
    approve = run_cli(backend, "domains", "approve", name, *team_flag)
    assert approve.returncode == 1
    assert approve.stderr.strip().splitlines()[-1] == (
        f"postroom: error: {name} is already approved for team {backend.team_id}; a domain can be approved for only "
        "one team at a time. Remove it from that team first."
    )
    third_team = new_team(backend)
    forced = run_cli(backend, "domains", "add", name, "--approve", "--team", str(third_team))
    assert forced.returncode == 1 and f"already approved for team {backend.team_id}" in forced.stderr
    shown = run_cli(backend, "domains", "show", name, *team_flag)
    assert shown.returncode == 0 and f"{name}: pending" in shown.stdout
    assert domains_service.APPROVAL_WITHHELD in shown.stdout and "approval_withheld" in shown.stdout

    # Once the owner lets the name go, the next team's own proof approves its copy.
    owner.domains.delete(name)
    assert squatter.domains.verify(name).dkim_status == "valid"
    assert squatter.domains.get(name).status == "approved"
