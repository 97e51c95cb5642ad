"""Asking DNS for a domain's records and judging them (``records.py``), as one :class:`Verification`.

Lookups go through dnspython's async resolver (``POSTROOM_DNS_SERVER`` or the system's). A lookup that fails for
reasons of DNS itself (timeout, SERVFAIL) gives status ``error`` for that record, never ``missing``: a resolver's
bad moment must not look like a customer deleting a record.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from postroom.domains import records
from postroom.domains.records import DmarcCheck, RecordCheck, SpfPolicy


class _LookupFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Verification:
    domain: str
    is_primary_domain: bool
    dkim: RecordCheck
    return_path: RecordCheck | None
    """None for an apex domain: it cannot carry a CNAME (``not_applicable``)."""
    spf: RecordCheck
    dmarc: DmarcCheck
    next_dkim: RecordCheck | None = None
    """The key waiting in a rotation, when there is one."""
    tracking: RecordCheck | None = None
    """The tracking domain's CNAME, when the domain has one (``tracking_domain`` is the host checked)."""
    tracking_domain: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        def check(value: dict[str, Any] | None) -> RecordCheck | None:
            return None if value is None else RecordCheck(**value)

        dmarc = dict(data["dmarc"])
        dmarc["check"] = RecordCheck(**dmarc["check"])
        return cls(
            domain=data["domain"],
            is_primary_domain=data["is_primary_domain"],
            dkim=RecordCheck(**data["dkim"]),
            return_path=check(data.get("return_path")),
            spf=RecordCheck(**data["spf"]),
            dmarc=DmarcCheck(**dmarc),
            next_dkim=check(data.get("next_dkim")),
            tracking=check(data.get("tracking")),
            tracking_domain=data.get("tracking_domain"),
        )


async def _answer(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: dns.rdatatype.RdataType
) -> dns.resolver.Answer | None:
    """The records of ``rdtype`` at ``name``; None when none exist; ``_LookupFailed`` when DNS did not answer."""
    try:
        return await resolver.resolve(dns.name.from_text(name), rdtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as exc:
        raise _LookupFailed(f"DNS lookup of {name} failed: {type(exc).__name__}") from exc


async def _txt(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """The TXT records at ``name``, each one's character-strings joined (RFC 7208 §3.3); [] when none exist."""
    answer = await _answer(resolver, name, dns.rdatatype.TXT)
    return [] if answer is None else [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


async def _cname(resolver: dns.asyncresolver.Resolver, name: str) -> str | None:
    answer = await _answer(resolver, name, dns.rdatatype.CNAME)
    return None if answer is None else str(answer[0].target)


async def _checked(lookup: Any, judge: Any) -> Any:
    try:
        return judge(await lookup)
    except _LookupFailed as exc:
        return RecordCheck("error", error=str(exc))


async def _dmarc(resolver: dns.asyncresolver.Resolver, domain: str) -> DmarcCheck:
    """DMARC at the domain, else at its organisational domain (RFC 7489 §6.6.3)."""
    try:
        found = await _txt(resolver, f"_dmarc.{domain}")
        result = records.check_dmarc(found, found_at=domain, domain=domain)
        organisational = records.organisational_domain(domain)
        if result.check.status == "missing" and organisational != domain:
            parent = await _txt(resolver, f"_dmarc.{organisational}")
            parent_result = records.check_dmarc(parent, found_at=organisational, domain=domain)
            if parent_result.check.status != "missing":
                return parent_result
        return result
    except _LookupFailed as exc:
        return DmarcCheck(RecordCheck("error", error=str(exc)))


async def verify_records(
    resolver: dns.asyncresolver.Resolver,
    *,
    domain: str,
    dkim_name: str,
    dkim_public_key: str,
    bounce_host: str,
    spf_policy: SpfPolicy,
    next_dkim: tuple[str, str] | None = None,
    tracking: tuple[str, str] | None = None,
) -> Verification:
    """Look every record up (concurrently) and judge it. ``next_dkim`` is (record name, public key) of a rotation,
    ``tracking`` (tracking domain, the host its CNAME must name)."""
    primary = records.is_primary_domain(domain)

    def judge_dkim(key: str) -> Any:
        return lambda found: records.check_dkim(found, key)

    dkim_check = _checked(_txt(resolver, dkim_name), judge_dkim(dkim_public_key))
    spf_check = _checked(_txt(resolver, domain), lambda found: records.check_spf(found, spf_policy))
    cname_check = (
        None if primary else _checked(_cname(resolver, domain), lambda target: records.check_cname(target, bounce_host))
    )
    next_check = None if next_dkim is None else _checked(_txt(resolver, next_dkim[0]), judge_dkim(next_dkim[1]))
    tracking_check = (
        None
        if tracking is None
        else _checked(_cname(resolver, tracking[0]), lambda target: records.check_cname(target, tracking[1]))
    )
    dkim_result, spf_result, dmarc_result, cname_result, next_result, tracking_result = await asyncio.gather(
        dkim_check,
        spf_check,
        _dmarc(resolver, domain),
        cname_check if cname_check is not None else _none(),
        next_check if next_check is not None else _none(),
        tracking_check if tracking_check is not None else _none(),
    )
    return Verification(
        domain,
        primary,
        dkim_result,
        cname_result,
        spf_result,
        dmarc_result,
        next_result,
        tracking_result,
        None if tracking is None else tracking[0],
    )


async def _none() -> None:
    return None
