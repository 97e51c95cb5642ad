"""Sending domains: registration with a DKIM key pair, DNS verification, approval, warnings and key rotation.

A domain becomes sendable (``approved``) when DNS serves its DKIM key, or when an operator approves it
(``postroom domains approve``). Several teams may register the same name (each gets its own selector and key, so
each must prove control of the zone for itself), but it is approved for one team at a time: the first to prove its
DKIM record, or the one an operator approved. Another team's proof then leaves its copy pending with a message that
says nothing of the first team (``APPROVAL_WITHHELD``); only the operator's command line is told who holds it.

Once DNS has served the key, the periodic re-check watches for it to disappear: the domain keeps sending in a
*warning* state for the grace period (``POSTROOM_DOMAIN_GRACE``, 24 h), then goes back to ``pending`` until the
record is restored. Every such change is a ``domain_events`` row the team sees.

DKIM private keys are sealed with the server secret before they are stored.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Row

from postroom.audit.service import Actor
from postroom.config import Settings
from postroom.core.clock import iso_resource
from postroom.core.crypto import SecretBox
from postroom.core.dkim import DkimKey, generate_rsa_key
from postroom.core.ids import new_id
from postroom.db.engine import serialise_on
from postroom.domains import queries, records
from postroom.domains.records import CheckStatus, SpfPolicy
from postroom.domains.verification import Verification
from postroom.errors import DomainNotFound, InvalidDomain, ResourceAlreadyExists, ValidationFailed
from postroom.jobs.base import WorkKind, enqueue

_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
_KEY_PURPOSE = "dkim-private-key"
PREVIOUS_KEY_LISTED_FOR = timedelta(days=7)
"""After a rotation, how long the old selector's record is still shown (receivers may check late signatures)."""

STATUS_LABELS = {"pending": "Pending Review", "approved": "Approved", "blocked": "Blocked"}


class DomainAlreadyExists(ResourceAlreadyExists):
    default_message = "This domain is already registered."


class DomainApprovedElsewhere(ResourceAlreadyExists):
    """An operator tried to approve a name that is approved for another team (only the command line says this)."""

    def __init__(self, domain: str, team_id: int) -> None:
        super().__init__(
            f"{domain} is already approved for team {team_id}; a domain can be approved for only one team at a "
            "time. Remove it from that team first."
        )


APPROVAL_WITHHELD = (
    "DNS serves this domain's DKIM key, but the domain cannot be approved for sending on this account. "
    "Contact the operator of this Postroom installation."
)
"""Why a domain whose DKIM record verifies stays pending: the name is approved elsewhere, which is not said."""


class RotationInProgress(ResourceAlreadyExists):
    default_message = "A DKIM key rotation is already waiting for its record to be published."


@cache
def _box(secret: bytes) -> SecretBox:
    return SecretBox(secret, _KEY_PURPOSE)


@lru_cache(maxsize=256)
def _open_key(sealed: str, secret: bytes) -> str:
    """The PEM of a sealed key, kept: every delivery signs with it, and the parsed key is kept anyway
    (``dkim.load_private_key``). Keys stored before sealing was introduced are PEM text; they are sealed the next
    time the row is written."""
    return sealed if sealed.startswith("-----BEGIN") else _box(secret).open(sealed)


@dataclass(frozen=True, slots=True)
class SendingDomain:
    id: str
    team_id: int
    domain: str
    status: str
    dkim_selector: str
    dkim_public_key: str
    """The whole TXT record value, ``v=DKIM1; k=rsa; p=…``."""
    dkim_private_key: str
    """Sealed; see :meth:`signing_key`."""
    created_at: datetime
    updated_at: datetime
    dkim_status: str | None
    cname_status: str | None
    spf_status: str | None
    dmarc_status: str | None
    verification: str | None
    last_checked_at: datetime | None
    dkim_verified_at: datetime | None
    warning_since: datetime | None
    dkim_next_selector: str | None
    dkim_next_private_key: str | None
    dkim_next_public_key: str | None
    dkim_previous_selector: str | None
    dkim_previous_public_key: str | None
    dkim_previous_retire_at: datetime | None
    tracking_domain: str | None
    tracking_status: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> SendingDomain:
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__slots__})

    @property
    def can_send(self) -> bool:
        return status_can_send(self.status)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status.title())

    @property
    def is_primary_domain(self) -> bool:
        return records.is_primary_domain(self.domain)

    @property
    def pending_reason(self) -> str | None:
        """Why a pending domain whose DKIM record verified is not sending (a valid record otherwise approves it)."""
        return APPROVAL_WITHHELD if self.status == "pending" and self.dkim_status == "valid" else None

    def signing_key(self, secret: bytes) -> DkimKey:
        """The key that signs this domain's mail, opened with the server secret."""
        pem = _open_key(self.dkim_private_key, secret)
        return DkimKey(domain=self.domain, selector=self.dkim_selector, private_key_pem=pem.encode())

    @property
    def dkim_public(self) -> str:
        """The bare public key (the ``p=`` value), as the API's ``dkim.public`` reports it."""
        return records.dkim_public_key(self.dkim_public_key)

    @property
    def dkim_record_name(self) -> str:
        return f"{self.dkim_selector}._domainkey.{self.domain}"

    @property
    def next_dkim_record_name(self) -> str | None:
        return None if self.dkim_next_selector is None else f"{self.dkim_next_selector}._domainkey.{self.domain}"

    @property
    def last_verification(self) -> Verification | None:
        return None if self.verification is None else Verification.from_json(json.loads(self.verification))


def normalise_domain(name: str) -> str:
    """Lower-case, no trailing dot; 422 unless it is a valid DNS name with at least two labels."""
    cleaned = name.strip().lower().rstrip(".")
    if not _DOMAIN.fullmatch(cleaned):
        raise ValidationFailed({"domain": ["The domain must be a valid domain name (e.g., example.com)."]})
    return cleaned


def sending_domain_of(address_domain: str) -> str:
    """The domain part of a sender address as a registered domain is written; 400 ``invalid_domain`` if it is not
    a DNS name (an address literal like ``[192.0.2.1]``, a single label like ``localhost``)."""
    try:
        return normalise_domain(address_domain)
    except ValidationFailed:
        raise InvalidDomain() from None


def tracking_target(settings: Settings) -> str:
    """The host a tracking domain's CNAME must point to: the host of the public base URL."""
    return urlsplit(settings.public_base_url).hostname or settings.host


def tracking_base(domain: SendingDomain | None, settings: Settings) -> str:
    """The base URL of a domain's open and click links: its tracking domain once the CNAME verified (same scheme
    as the public base URL), else the public base URL itself."""
    if domain is None or domain.tracking_domain is None or domain.tracking_status != "valid":
        return settings.public_base_url
    return f"{urlsplit(settings.public_base_url).scheme}://{domain.tracking_domain}"


def set_tracking_domain(
    conn: Connection, *, team_id: int, name: str, tracking_domain: str | None, actor: Actor, now: datetime
) -> SendingDomain:
    """Give the domain a tracking domain (None removes it). It must be a subdomain of the sending domain's
    registrable domain, so DKIM on the same zone already proves who controls it; it is used once its CNAME
    verifies."""
    current = get_domain(conn, team_id=team_id, name=name)
    host = None
    if tracking_domain is not None:
        try:
            host = normalise_domain(tracking_domain)
        except ValidationFailed:
            raise ValidationFailed({"tracking_domain": ["The tracking domain must be a valid domain name."]}) from None
        organisational = records.organisational_domain(current.domain)
        if not host.endswith("." + organisational) or host == current.domain:
            raise ValidationFailed(
                {"tracking_domain": [f"The tracking domain must be a subdomain of {organisational}, other than "
                                     f"{current.domain} itself."]}
            )  # fmt: skip
        other = queries.domain_by_tracking_domain(conn, host)
        if other is not None and other.id != current.id:
            raise ValidationFailed({"tracking_domain": ["This tracking domain is used by another domain."]})
    if host != current.tracking_domain:
        queries.update_domain(conn, current.id, {"tracking_domain": host, "tracking_status": None, "updated_at": now})
        detail = f"tracking domain {host} waits for its CNAME" if host else "tracking domain removed"
        _event(conn, team_id, current.domain, "tracking_domain_set", detail, now)
        actor.record(
            conn,
            team_id=team_id,
            action="domain.tracking_domain_set",
            target=_target(current.domain),
            old={"tracking_domain": current.tracking_domain},
            new={"tracking_domain": host},
            now=now,
        )
    return get_domain(conn, team_id=team_id, name=name)


def _new_selector(now: datetime) -> str:
    return f"pr{now:%Y%m}{secrets.token_hex(2)}"


def add_domain(
    conn: Connection, *, team_id: int, name: str, approve: bool, actor: Actor, now: datetime, settings: Settings
) -> SendingDomain:
    """Register ``name`` for ``team_id`` with a new RSA-2048 DKIM key; approved at once when ``approve``.

    Its periodic DNS check is queued in the same transaction.
    """
    domain = normalise_domain(name)
    if queries.domain_in_team(conn, team_id, domain) is not None:
        raise DomainAlreadyExists()
    if approve:
        _refuse_if_approved_elsewhere(conn, team_id=team_id, name=domain)
    private_pem, public_txt = generate_rsa_key()
    domain_id = new_id("dom")
    queries.insert_domain(
        conn,
        {
            "id": domain_id,
            "team_id": team_id,
            "domain": domain,
            "status": "approved" if approve else "pending",
            "dkim_selector": _new_selector(now),
            "dkim_private_key": _box(settings.server_secret).seal(private_pem.decode()),
            "dkim_public_key": public_txt,
            "created_at": now,
            "updated_at": now,
        },
    )
    _event(conn, team_id, domain, "added", "approved by an operator" if approve else "waiting for DNS records", now)
    schedule_recheck(conn, domain_id=domain_id, settings=settings, now=now)
    added = get_domain(conn, team_id=team_id, name=domain)
    actor.record(
        conn,
        team_id=team_id,
        action="domain.added",
        target=_target(domain),
        new={"status": added.status, "dkim_selector": added.dkim_selector},
        now=now,
    )
    return added


def _target(domain: str) -> str:
    return f"domain:{domain}"


def get_domain(conn: Connection, *, team_id: int, name: str) -> SendingDomain:
    row = queries.domain_in_team(conn, team_id, name.lower())
    if row is None:
        raise DomainNotFound()
    return SendingDomain.from_row(row)


def status_can_send(status: str | None) -> bool:
    """Whether a domain in ``status`` (None: no such domain) may send."""
    return status == "approved"


def may_send_from(conn: Connection, *, team_id: int, name: str) -> bool:
    """Whether ``team_id`` has the domain ``name`` and it may send (the check every send makes)."""
    return status_can_send(queries.domain_status_in_team(conn, team_id, name.lower()))


def find_domain(conn: Connection, *, team_id: int, name: str) -> SendingDomain | None:
    row = queries.domain_in_team(conn, team_id, name.lower())
    return None if row is None else SendingDomain.from_row(row)


def domain_by_id(conn: Connection, domain_id: str) -> SendingDomain | None:
    """For the re-check job, which carries only the id."""
    row = queries.domain_by_id(conn, domain_id)
    return None if row is None else SendingDomain.from_row(row)


def _approved_elsewhere(conn: Connection, *, team_id: int, name: str) -> int | None:
    """The other team ``name`` is approved for, if any; concurrent approvals of one name wait for each other, so
    the partial unique index never has to refuse one."""
    serialise_on(conn, f"domain-approval:{name}")
    return queries.team_approved_for(conn, name, other_than=team_id)


def _refuse_if_approved_elsewhere(conn: Connection, *, team_id: int, name: str) -> None:
    holder = _approved_elsewhere(conn, team_id=team_id, name=name)
    if holder is not None:
        raise DomainApprovedElsewhere(name, holder)


def approve_domain(conn: Connection, *, team_id: int, name: str, actor: Actor, now: datetime) -> SendingDomain:
    """An operator's approval; refused (``DomainApprovedElsewhere``) while another team has the name approved."""
    current = get_domain(conn, team_id=team_id, name=name)
    if current.status != "approved":
        _refuse_if_approved_elsewhere(conn, team_id=team_id, name=current.domain)
        queries.update_domain(conn, current.id, {"status": "approved", "updated_at": now})
        _event(conn, team_id, current.domain, "approved", "approved by an operator", now)
        actor.record(
            conn,
            team_id=team_id,
            action="domain.approved",
            target=_target(current.domain),
            old={"status": current.status},
            new={"status": "approved"},
            now=now,
        )
    return get_domain(conn, team_id=team_id, name=name)


def delete_domain(conn: Connection, *, team_id: int, name: str, actor: Actor, now: datetime) -> None:
    current = get_domain(conn, team_id=team_id, name=name)
    queries.delete_domain(conn, current.id)
    _event(conn, team_id, current.domain, "deleted", "the domain was removed", now)
    actor.record(
        conn,
        team_id=team_id,
        action="domain.deleted",
        target=_target(current.domain),
        old={"status": current.status, "dkim_selector": current.dkim_selector},
        now=now,
    )


def list_domains(conn: Connection, *, team_id: int | None) -> list[SendingDomain]:
    return [SendingDomain.from_row(row) for row in queries.domains_in_team(conn, team_id)]


def domain_events(conn: Connection, *, team_id: int, name: str | None = None, limit: int = 100) -> list[Row[Any]]:
    return list(queries.events_of_domains(conn, team_id, name, limit))


def start_rotation(
    conn: Connection, *, team_id: int, name: str, actor: Actor, now: datetime, settings: Settings
) -> SendingDomain:
    """Make a new key under a new selector; it signs once DNS serves it (the next verification switches)."""
    current = get_domain(conn, team_id=team_id, name=name)
    if current.dkim_next_selector is not None:
        raise RotationInProgress()
    private_pem, public_txt = generate_rsa_key()
    selector = _new_selector(now)
    while selector == current.dkim_selector:
        selector = _new_selector(now)
    queries.update_domain(
        conn,
        current.id,
        {
            "dkim_next_selector": selector,
            "dkim_next_private_key": _box(settings.server_secret).seal(private_pem.decode()),
            "dkim_next_public_key": public_txt,
            "updated_at": now,
        },
    )
    _event(conn, team_id, current.domain, "dkim_rotation_started", f"publish the new key at {selector}", now)
    actor.record(
        conn,
        team_id=team_id,
        action="domain.dkim_rotation_started",
        target=_target(current.domain),
        old={"dkim_selector": current.dkim_selector},
        new={"dkim_next_selector": selector},
        now=now,
    )
    return get_domain(conn, team_id=team_id, name=name)


def schedule_recheck(conn: Connection, *, domain_id: str, settings: Settings, now: datetime) -> None:
    """Queue the next periodic DNS check of ``domain_id`` (inside the caller's transaction)."""
    run_at = now + timedelta(seconds=settings.domain_recheck_seconds)
    enqueue(conn, kind=WorkKind.VERIFY_DOMAIN, ref=domain_id, run_at=run_at, now=now)


def ensure_rechecks(conn: Connection, *, settings: Settings, now: datetime) -> int:
    """Start the periodic check of every domain that has none queued; how many were started."""
    missing = queries.domains_without_recheck(conn, WorkKind.VERIFY_DOMAIN.value)
    for domain_id in missing:
        schedule_recheck(conn, domain_id=domain_id, settings=settings, now=now)
    return len(missing)


# -- verification ----------------------------------------------------------------------------------------------


def expected_records(domain: SendingDomain, settings: Settings) -> list[dict[str, Any]]:
    """What the customer must publish, each with the status the last check found (None before the first)."""
    checked = domain.last_verification

    def row(purpose: str, kind: str, name: str, value: str | None, check: records.RecordCheck | None) -> dict[str, Any]:
        status: CheckStatus | None = None if check is None else check.status
        return {"purpose": purpose, "type": kind, "name": name, "value": value, "status": status}

    rows = [row("dkim", "TXT", domain.dkim_record_name, domain.dkim_public_key, checked.dkim if checked else None)]
    if domain.next_dkim_record_name is not None:
        next_check = checked.next_dkim if checked else None
        rows.append(row("dkim_next", "TXT", domain.next_dkim_record_name, domain.dkim_next_public_key, next_check))
    if domain.dkim_previous_selector is not None and domain.dkim_previous_retire_at is not None:
        previous_name = f"{domain.dkim_previous_selector}._domainkey.{domain.domain}"
        previous = row("dkim_previous", "TXT", previous_name, domain.dkim_previous_public_key, None)
        rows.append({**previous, "remove_after": iso_resource(domain.dkim_previous_retire_at)})
    if not domain.is_primary_domain:
        cname_check = checked.return_path if checked else None
        rows.append(row("return_path", "CNAME", domain.domain, settings.bounce_host, cname_check))
    if domain.tracking_domain is not None:
        tracking_check = checked.tracking if checked and checked.tracking_domain == domain.tracking_domain else None
        rows.append(row("tracking", "CNAME", domain.tracking_domain, tracking_target(settings), tracking_check))
    spf_value = SpfPolicy.from_settings(settings).record
    rows.append(row("spf", "TXT", domain.domain, spf_value, checked.spf if checked else None))
    dmarc_name, dmarc_value = f"_dmarc.{domain.domain}", records.dmarc_record(domain.domain)
    rows.append(row("dmarc", "TXT", dmarc_name, dmarc_value, checked.dmarc.check if checked else None))
    return rows


def api_status(check: records.RecordCheck, *, allow_missing: bool) -> str:
    """A check's status as the Lettr API words it: DKIM and CNAME know no ``missing`` (they say ``unverified``)."""
    if check.status == "error" or (check.status == "missing" and not allow_missing):
        return "unverified"
    return check.status


def record_verification(
    conn: Connection,
    *,
    domain: SendingDomain,
    result: Verification,
    now: datetime,
    grace: timedelta,
    actor: Actor | None = None,
) -> SendingDomain:
    """Store what DNS served and move the domain along: approve, switch a rotated key, warn, or stop sending.

    A check someone asked for (``actor``) is an audit event; the periodic re-check is not.
    """
    values: dict[str, Any] = {
        "dkim_status": api_status(result.dkim, allow_missing=False),
        "cname_status": "not_applicable"
        if result.return_path is None
        else api_status(result.return_path, allow_missing=False),
        "spf_status": api_status(result.spf, allow_missing=True),
        "dmarc_status": api_status(result.dmarc.check, allow_missing=True),
        "verification": json.dumps(result.to_json()),
        "last_checked_at": now,
        "tracking_status": None
        if result.tracking is None or result.tracking_domain != domain.tracking_domain
        else api_status(result.tracking, allow_missing=False),
        "updated_at": now,
    }
    team_id, name = domain.team_id, domain.domain
    dkim_valid = result.dkim.status == "valid"
    if result.next_dkim is not None and result.next_dkim.status == "valid" and domain.dkim_next_selector:
        # The new key is published: it signs from now on; the old record stays listed for a while.
        values.update(
            dkim_selector=domain.dkim_next_selector,
            dkim_private_key=domain.dkim_next_private_key,
            dkim_public_key=domain.dkim_next_public_key,
            dkim_next_selector=None,
            dkim_next_private_key=None,
            dkim_next_public_key=None,
            dkim_previous_selector=domain.dkim_selector,
            dkim_previous_public_key=domain.dkim_public_key,
            dkim_previous_retire_at=now + PREVIOUS_KEY_LISTED_FOR,
            dkim_status="valid",
        )
        detail = f"{domain.dkim_next_selector} now signs; remove {domain.dkim_selector} after 7 days"
        _event(conn, team_id, name, "dkim_rotated", detail, now)
        dkim_valid = True
    elif domain.dkim_previous_retire_at is not None and domain.dkim_previous_retire_at <= now:
        values.update(dkim_previous_selector=None, dkim_previous_public_key=None, dkim_previous_retire_at=None)
        _event(conn, team_id, name, "dkim_retired", f"{domain.dkim_previous_selector} is retired", now)

    withheld = (
        dkim_valid and domain.status == "pending" and _approved_elsewhere(conn, team_id=team_id, name=name) is not None
    )
    if withheld:
        if domain.dkim_status != "valid":  # said once, not at every periodic check
            _event(conn, team_id, name, "approval_withheld", APPROVAL_WITHHELD, now)
    elif dkim_valid:
        values["dkim_verified_at"] = now
        if domain.warning_since is not None:
            values["warning_since"] = None
            _event(conn, team_id, name, "dkim_restored", "DNS serves the DKIM key again", now)
        if domain.status == "pending":
            values["status"] = "approved"
            _event(conn, team_id, name, "approved", "DNS serves the DKIM key: the domain may send", now)
    elif result.dkim.status in ("missing", "invalid") and domain.dkim_verified_at is not None:
        # It verified before, so the record disappeared or changed. DNS errors never get here.
        since = domain.warning_since or now
        if domain.warning_since is None:
            values["warning_since"] = now
            stops = iso_resource(now + grace)
            _event(conn, team_id, name, "dkim_failing", f"{result.dkim.error} Sending stops at {stops}.", now)
        if domain.status == "approved" and now - since >= grace:
            values["status"] = "pending"
            _event(conn, team_id, name, "sending_suspended", f"{result.dkim.error} Sending has stopped.", now)
    queries.update_domain(conn, domain.id, values)
    after = get_domain(conn, team_id=team_id, name=name)
    if actor is not None:
        actor.record(
            conn,
            team_id=team_id,
            action="domain.verified",
            target=_target(name),
            old={"status": domain.status, "dkim_status": domain.dkim_status},
            new={"status": after.status, "dkim_status": after.dkim_status},
            now=now,
        )
    return after


def _event(conn: Connection, team_id: int, domain: str, kind: str, detail: str, now: datetime) -> None:
    queries.insert_domain_event(
        conn, {"team_id": team_id, "domain": domain, "type": kind, "detail": detail, "occurred_at": now}
    )
