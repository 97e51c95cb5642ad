"""Where to deliver mail for a recipient domain (RFC 5321 §5.1, RFC 7505), with dnspython's async resolver.

The delivery worker needs two answers from DNS: which hosts accept mail for a domain, in order of preference, and
which addresses those hosts have. Every failure is classified once, here, as *permanent* (the message can never
be delivered: bounce it) or *temporary* (DNS is having a bad moment: retry later), so that callers never have to
know dnspython's exception hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.rdtypes.mxbase
import dns.resolver

MxErrorKind = Literal["nxdomain", "null_mx", "no_mx", "dns_temporary"]


@dataclass(frozen=True)
class MxHost:
    """One host that accepts mail for a domain; lower ``preference`` is tried first. ``host`` has no final dot."""

    preference: int
    host: str


class MxLookupError(Exception):
    """DNS could not tell us where to deliver, and whether retrying later can help (``permanent``).

    ``kind`` is one of ``nxdomain`` (the domain does not exist), ``null_mx`` (the domain says it accepts no mail,
    RFC 7505), ``no_mx`` (neither MX nor address records), all permanent, or ``dns_temporary`` (timeout, SERVFAIL,
    no nameserver answered).
    """

    def __init__(self, domain: str, kind: MxErrorKind, detail: str = "") -> None:
        self.domain = domain
        self.kind: MxErrorKind = kind
        self.permanent: bool = kind != "dns_temporary"
        self.detail = detail
        message = f"{domain}: {kind}"
        super().__init__(f"{message} ({detail})" if detail else message)


def _absolute(domain: str) -> dns.name.Name:
    """The domain as an absolute DNS name, so no resolv.conf search suffix is ever appended to it."""
    try:
        return dns.name.from_text(domain.strip())
    except dns.exception.DNSException as exc:
        # Not a name DNS can hold (empty label, too long, bad IDNA): it can never exist.
        raise MxLookupError(domain, "nxdomain", f"invalid domain name: {exc}") from exc


def _temporary(domain: str, exc: dns.exception.DNSException) -> MxLookupError:
    return MxLookupError(domain, "dns_temporary", str(exc) or type(exc).__name__)


async def _query(
    resolver: dns.asyncresolver.Resolver, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, domain: str
) -> dns.resolver.Answer | None:
    """The answer, or None for NODATA; NXDOMAIN propagates; anything else is a temporary MxLookupError."""
    try:
        return await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NoAnswer:
        return None
    except dns.resolver.NXDOMAIN:
        raise
    except dns.exception.DNSException as exc:
        # LifetimeTimeout, NoNameservers (SERVFAIL/REFUSED/unreachable from every server), YXDOMAIN, ...
        raise _temporary(domain, exc) from exc


async def resolve_mx(domain: str, resolver: dns.asyncresolver.Resolver) -> list[MxHost]:
    """The hosts to try for ``domain``, most preferred first (ties ordered by host name, so runs are repeatable).

    No MX but an A or AAAA record means the domain itself is the mail host (RFC 5321 §5.1 "implicit MX"). A null
    MX (``0 .``, RFC 7505) means the domain accepts no mail at all. Raises MxLookupError.
    """
    name = _absolute(domain)
    try:
        answer = await _query(resolver, name, dns.rdatatype.MX, domain)
    except dns.resolver.NXDOMAIN as exc:
        raise MxLookupError(domain, "nxdomain", "domain does not exist") from exc
    if answer is not None:
        hosts: list[MxHost] = []
        saw_null = False
        for rdata in answer:
            if not isinstance(rdata, dns.rdtypes.mxbase.MXBase):
                continue
            if rdata.exchange == dns.name.root:
                saw_null = True
                continue
            hosts.append(MxHost(int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True)))
        if hosts:
            # A null MX next to real ones breaks RFC 7505 §3; the real hosts are the better guess at intent.
            return sorted(hosts, key=lambda mx: (mx.preference, mx.host.lower()))
        if saw_null:
            raise MxLookupError(domain, "null_mx", "domain publishes a null MX: it accepts no mail")
    # No MX records: fall back to the domain's own address records.
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            if await _query(resolver, name, rdtype, domain) is not None:
                return [MxHost(0, name.to_text(omit_final_dot=True))]
        except dns.resolver.NXDOMAIN:
            break
    raise MxLookupError(domain, "no_mx", "no MX and no A/AAAA records")


async def resolve_addresses(host: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    """IPv4 then IPv6 addresses of a mail host; empty when it has none.

    A temporary failure of one family is only raised when the other family gave nothing either: a host whose A
    lookup works should not have its mail held back by a flaky AAAA.
    """
    name = _absolute(host)
    addresses: list[str] = []
    failure: MxLookupError | None = None
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await _query(resolver, name, rdtype, host)
        except dns.resolver.NXDOMAIN:
            return []
        except MxLookupError as exc:
            failure = exc
            continue
        if answer is not None:
            addresses.extend(rdata.to_text() for rdata in answer)
    if not addresses and failure is not None:
        raise failure
    return addresses
