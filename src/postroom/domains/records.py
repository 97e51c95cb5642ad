"""The DNS records a sending domain must publish, and how what DNS serves is judged against them.

Four records, and a fifth for a tracking domain:

- **DKIM** — TXT ``<selector>._domainkey.<domain>`` = our public key. This is the one that makes a domain
  sendable: it proves control of the zone and lets receivers verify our signatures.
- **Return path** — for a subdomain, a CNAME at the domain pointing to the bounce host, so bounces come back to
  us and SPF aligns; an apex domain cannot carry a CNAME (``not_applicable``) and publishes SPF instead.
- **SPF** — TXT ``v=spf1 …`` at the domain authorising our sending host (``include:``, ``ip4:``/``ip6:`` or
  ``a:`` of the mail host, whichever the operator configured).
- **DMARC** — TXT at ``_dmarc.<domain>``, or inherited from the organisational domain (RFC 7489 §6.6.3, found
  through the public suffix list).
- **Tracking domain** (optional) — a CNAME at the chosen host pointing to the host of the public base URL, so open
  and click links can carry the sender's own name.

Each check yields a :class:`RecordCheck` with status ``valid``, ``invalid`` (something is published but wrong),
``missing`` (nothing is published) or ``error`` (DNS did not answer: say nothing about the record).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from typing import Literal

from publicsuffixlist import PublicSuffixList

from postroom.config import Settings

CheckStatus = Literal["valid", "invalid", "missing", "error"]

DKIM_SIGNED_HEADERS = "from:to:subject:date"
"""What the DKIM API object reports as ``headers`` (we sign these and more when present; see core/dkim.py)."""


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organisational_domain(domain: str) -> str:
    """The registrable domain (``mail.example.co.uk`` → ``example.co.uk``), or ``domain`` itself if it is a suffix."""
    return _public_suffixes().privatesuffix(domain) or domain


def registrable_domain(name: str) -> str | None:
    """The registrable domain of ``name`` under a suffix the public suffix list knows, or None (an unknown or
    reserved suffix such as ``.test`` or ``.local``, a bare suffix, a single label)."""
    return _public_suffixes().privatesuffix(name, accept_unknown=False)


def is_primary_domain(domain: str) -> bool:
    """Whether ``domain`` is an apex (registrable) domain rather than a subdomain of one."""
    return organisational_domain(domain) == domain


@dataclass(frozen=True, slots=True)
class RecordCheck:
    status: CheckStatus
    found: str | None = None
    """The record DNS served (the relevant one), if any."""
    error: str | None = None
    """Why the record is not valid, in words a person can act on."""


def dkim_public_key(txt_value: str) -> str:
    """The ``p=`` value of a DKIM TXT record (our stored records are ``v=DKIM1; k=rsa; p=…``)."""
    return _tags(txt_value).get("p", "")


def _tags(record: str) -> dict[str, str]:
    """``tag=value; tag=value`` (DKIM and DMARC syntax) with whitespace removed from values, tags lower-cased."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def check_dkim(txt_records: list[str], expected_public_key: str) -> RecordCheck:
    """Judge the TXT records at ``<selector>._domainkey.<domain>`` against the key we sign with."""
    keys = [r for r in txt_records if "p=" in r.replace(" ", "").lower() or r.lower().startswith("v=dkim1")]
    if not keys:
        return RecordCheck("missing", error="No DKIM record is published at this name.")
    if len(keys) > 1:
        return RecordCheck("invalid", found=" | ".join(keys), error="More than one DKIM record is published.")
    record = keys[0]
    tags = _tags(record)
    if tags.get("v", "DKIM1").upper() != "DKIM1":
        return RecordCheck("invalid", found=record, error="The record's v= tag must be DKIM1.")
    if tags.get("k", "rsa").lower() != "rsa":
        return RecordCheck("invalid", found=record, error="The record's key type (k=) must be rsa.")
    if not tags.get("p"):
        return RecordCheck("invalid", found=record, error="The record has an empty key (p=): the key is revoked.")
    if tags["p"] != expected_public_key:
        return RecordCheck("invalid", found=record, error="The published key (p=) is not this domain's DKIM key.")
    return RecordCheck("valid", found=record)


def check_cname(cname_target: str | None, expected_host: str) -> RecordCheck:
    """Judge a CNAME (the return path at a subdomain, a tracking domain) against the host it must point to."""
    if cname_target is None:
        return RecordCheck("missing", error=f"No CNAME record points this domain to {expected_host}.")
    target = cname_target.rstrip(".").lower()
    if target != expected_host.lower():
        return RecordCheck("invalid", found=target, error=f"The CNAME points to {target}, not {expected_host}.")
    return RecordCheck("valid", found=target)


@dataclass(frozen=True, slots=True)
class SpfPolicy:
    """What our SPF mechanism is, from the settings: ``include:`` domains, addresses, or ``a:`` of the mail host."""

    includes: tuple[str, ...]
    addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    mail_host: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SpfPolicy:
        return cls(settings.spf_includes, settings.spf_addresses, settings.mail_hostname)

    @property
    def mechanisms(self) -> list[str]:
        if self.includes or self.addresses:
            ips = [f"{'ip4' if n.version == 4 else 'ip6'}:{_network_text(n)}" for n in self.addresses]
            return [*(f"include:{d}" for d in self.includes), *ips]
        return [f"a:{self.mail_host}"]

    @property
    def record(self) -> str:
        return " ".join(["v=spf1", *self.mechanisms, "~all"])

    def authorises(self, record: str) -> bool:
        """Whether ``record``'s own mechanisms name ours (includes are not followed: we check what we asked for)."""
        terms = [t.lower().lstrip("+") for t in record.split()[1:]]
        if self.includes or self.addresses:
            includes_ok = all(f"include:{d.lower()}" in terms for d in self.includes)
            return includes_ok and all(_covered(n, terms) for n in self.addresses)
        return f"a:{self.mail_host.lower()}" in terms


def _network_text(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    single = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if single else str(network)


def _covered(network: ipaddress.IPv4Network | ipaddress.IPv6Network, terms: list[str]) -> bool:
    for term in terms:
        kind, _, value = term.partition(":")
        if kind not in ("ip4", "ip6") or not value:
            continue
        try:
            published = ipaddress.ip_network(value, strict=False)
        except ValueError:
            continue
        if published.version == network.version and network.subnet_of(published):  # type: ignore[arg-type]
            return True
    return False


def check_spf(txt_records: list[str], policy: SpfPolicy) -> RecordCheck:
    """Judge the TXT records at the domain: exactly one SPF record (RFC 7208 §3.2) that authorises us."""
    spf = [r for r in txt_records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    if not spf:
        return RecordCheck("missing", error="No SPF record (v=spf1 …) is published at this domain.")
    if len(spf) > 1:
        return RecordCheck("invalid", found=" | ".join(spf), error="More than one SPF record: receivers reject both.")
    if not policy.authorises(spf[0]):
        wanted = " ".join(policy.mechanisms)
        return RecordCheck("invalid", found=spf[0], error=f"The SPF record does not include {wanted}.")
    return RecordCheck("valid", found=spf[0])


@dataclass(frozen=True, slots=True)
class DmarcCheck:
    check: RecordCheck
    found_at_domain: str | None = None
    policy: str | None = None
    subdomain_policy: str | None = None
    covered_by_parent_policy: bool = False


def check_dmarc(txt_records: list[str], *, found_at: str, domain: str) -> DmarcCheck:
    """Judge the TXT records at ``_dmarc.<found_at>`` (the domain itself, or its organisational domain)."""
    dmarc = [r for r in txt_records if _tags(r).get("v", "").upper() == "DMARC1" and r.lower().startswith("v=")]
    if not dmarc:
        return DmarcCheck(RecordCheck("missing", error="No DMARC record (v=DMARC1) is published."))
    parent = found_at != domain
    if len(dmarc) > 1:
        error = "More than one DMARC record: receivers ignore them all."
        return DmarcCheck(RecordCheck("invalid", found=" | ".join(dmarc), error=error), found_at_domain=found_at)
    record = dmarc[0]
    tags = _tags(record)
    policy = tags.get("p", "").lower() or None
    subdomain_policy = tags.get("sp", "").lower() or None
    if policy not in ("none", "quarantine", "reject"):
        check = RecordCheck("invalid", found=record, error="The DMARC record needs p=none, p=quarantine or p=reject.")
    else:
        check = RecordCheck("valid", found=record)
    return DmarcCheck(check, found_at, policy, subdomain_policy, covered_by_parent_policy=parent)


def dmarc_record(domain: str) -> str:
    """The DMARC record we suggest: monitor first (p=none), aggregate reports to the domain's postmaster."""
    return f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"
