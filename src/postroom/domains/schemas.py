"""The JSON shapes of the domain routes: what the official SDKs read, and nothing secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from postroom.config import Settings
from postroom.core.clock import iso_resource
from postroom.core.openapi import Timestamp
from postroom.domains.records import DKIM_SIGNED_HEADERS, RecordCheck
from postroom.domains.service import SendingDomain, api_status, expected_records
from postroom.domains.verification import Verification


def dkim_body(domain: SendingDomain) -> dict[str, Any]:
    return {
        "public": domain.dkim_public,
        "selector": domain.dkim_selector,
        "headers": DKIM_SIGNED_HEADERS,
        "signing_domain": domain.domain,
    }


def list_item_body(domain: SendingDomain) -> dict[str, Any]:
    return {
        "domain": domain.domain,
        "status": domain.status,
        "status_label": domain.status_label,
        "can_send": domain.can_send,
        "cname_status": domain.cname_status,
        "dkim_status": domain.dkim_status,
        "created_at": iso_resource(domain.created_at),
        "updated_at": iso_resource(domain.updated_at),
    }


def created_body(domain: SendingDomain) -> dict[str, Any]:
    return {
        "domain": domain.domain,
        "status": domain.status,
        "status_label": domain.status_label,
        "dkim": dkim_body(domain),
    }


def detail_body(domain: SendingDomain, settings: Settings) -> dict[str, Any]:
    """List fields plus statuses and ``dns``: the records to publish (``records``, a Postroom addition the SDKs
    keep as a raw dict) and, while a verified DKIM record is failing, when sending stops (``warning``)."""
    warning = None
    if domain.warning_since is not None:
        stops = domain.warning_since + timedelta(seconds=settings.domain_grace_seconds)
        warning = {"since": iso_resource(domain.warning_since), "sending_stops_at": iso_resource(stops)}
    return {
        **list_item_body(domain),
        "dmarc_status": domain.dmarc_status,
        "spf_status": domain.spf_status,
        "is_primary_domain": domain.is_primary_domain,
        "tracking_domain": domain.tracking_domain,
        "dns": {
            "dkim": {k: v for k, v in dkim_body(domain).items() if k != "signing_domain"},
            "records": expected_records(domain, settings),
            "warning": warning,
            "pending_reason": domain.pending_reason,
            "last_checked_at": iso_resource(domain.last_checked_at) if domain.last_checked_at else None,
        },
        "dns_provider": None,
    }


def verification_body(domain: SendingDomain, result: Verification) -> dict[str, Any]:
    def error(check: RecordCheck | None) -> str | None:
        return None if check is None else check.error

    def found(check: RecordCheck | None) -> str | None:
        return None if check is None else check.found

    dmarc, spf = result.dmarc, result.spf
    dkim_valid = domain.dkim_status == "valid"
    return {
        "domain": domain.domain,
        "dkim_status": domain.dkim_status,
        "cname_status": domain.cname_status,
        "dmarc_status": domain.dmarc_status,
        "spf_status": domain.spf_status,
        "is_primary_domain": result.is_primary_domain,
        "ownership_verified": "true" if dkim_valid else "false",
        "status": domain.status,
        "pending_reason": domain.pending_reason,
        "dns": {
            "dkim_record": found(result.dkim),
            "cname_record": found(result.return_path),
            "dkim_error": error(result.dkim),
            "cname_error": error(result.return_path),
            "dmarc_record": found(dmarc.check),
            "dmarc_error": error(dmarc.check),
            "spf_record": found(spf),
            "spf_error": error(spf),
            "tracking_record": found(result.tracking),
            "tracking_error": error(result.tracking),
        },
        "dmarc": {
            "is_valid": dmarc.check.status == "valid",
            "status": api_status(dmarc.check, allow_missing=True),
            "found_at_domain": dmarc.found_at_domain,
            "record": dmarc.check.found,
            "policy": dmarc.policy,
            "subdomain_policy": dmarc.subdomain_policy,
            "error": dmarc.check.error,
            "covered_by_parent_policy": dmarc.covered_by_parent_policy,
        },
        "spf": {
            "is_valid": spf.status == "valid",
            "status": api_status(spf, allow_missing=True),
            "record": spf.found,
            "error": spf.error,
            "includes_sparkpost": spf.status == "valid",
        },
    }


# -- OpenAPI documentation (postroom.core.openapi): the bodies above as types -------------------------------------


class TrackingDomainInput(msgspec.Struct):
    """``{"tracking_domain": "track.example.com"}``; null removes it."""

    tracking_domain: str | None


class CreateDomainInput(msgspec.Struct):
    """``{"domain": "example.com"}``."""

    domain: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=255, pattern=r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,}$"
        ),
    ]


class DomainListItem(msgspec.Struct):
    """``status`` is ``pending``, ``approved`` or ``blocked``; the check statuses are null until the first check."""

    domain: str
    status: str
    status_label: str
    can_send: bool
    cname_status: str | None
    dkim_status: str | None
    created_at: Timestamp
    updated_at: Timestamp


class DomainList(msgspec.Struct):
    domains: list[DomainListItem]


class Dkim(msgspec.Struct):
    public: str
    selector: str
    headers: str
    signing_domain: str


class CreatedDomain(msgspec.Struct):
    domain: str
    status: str
    status_label: str
    dkim: Dkim


class DkimRecord(msgspec.Struct):
    public: str
    selector: str
    headers: str


class DnsRecord(msgspec.Struct, kw_only=True):
    """One record to publish; ``status`` is the last check's (null before the first), ``remove_after`` only on the
    retiring DKIM key's record."""

    purpose: str
    type: str
    name: str
    value: str | None
    status: str | None
    remove_after: Timestamp | UnsetType = UNSET


class DkimWarning(msgspec.Struct):
    since: Timestamp
    sending_stops_at: Timestamp


class DomainDns(msgspec.Struct):
    """``pending_reason`` (a Postroom addition) says why a pending domain whose DKIM record verifies does not send."""

    dkim: DkimRecord
    records: list[DnsRecord]
    warning: DkimWarning | None
    pending_reason: str | None
    last_checked_at: Timestamp | None


class DomainDetail(DomainListItem, kw_only=True):
    """A list item's fields, then the DNS checks and records."""

    dmarc_status: str | None
    spf_status: str | None
    is_primary_domain: bool
    tracking_domain: str | None
    dns: DomainDns
    dns_provider: dict[str, Any] | None


class VerificationDns(msgspec.Struct):
    dkim_record: str | None
    cname_record: str | None
    dkim_error: str | None
    cname_error: str | None
    dmarc_record: str | None
    dmarc_error: str | None
    spf_record: str | None
    spf_error: str | None
    tracking_record: str | None
    """Postroom addition: the tracking domain's CNAME as found (null without a tracking domain)."""
    tracking_error: str | None


class DmarcResult(msgspec.Struct):
    is_valid: bool
    status: str
    found_at_domain: str | None
    record: str | None
    policy: str | None
    subdomain_policy: str | None
    error: str | None
    covered_by_parent_policy: bool


class SpfResult(msgspec.Struct):
    is_valid: bool
    status: str
    record: str | None
    error: str | None
    includes_sparkpost: bool


class DomainVerification(msgspec.Struct):
    """``ownership_verified`` is a string (``"true"``/``"false"``), as the SDKs expect. ``status`` (the domain's,
    after the check) and ``pending_reason`` (why a domain whose DKIM record verifies stays pending) are Postroom
    additions."""

    domain: str
    dkim_status: str | None
    cname_status: str | None
    dmarc_status: str | None
    spf_status: str | None
    is_primary_domain: bool
    ownership_verified: str | None
    status: str
    pending_reason: str | None
    dns: VerificationDns
    dmarc: DmarcResult
    spf: SpfResult
