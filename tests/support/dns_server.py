"""A real DNS server on loopback, built on dnslib, whose records tests change while it runs.

It answers over UDP and TCP on one ephemeral port, like a real nameserver, so the resolver under test does its
real work: UDP first, a truncated reply (TC) when the answer does not fit the client's buffer, then TCP.

Quirks of dnslib worked around here:

- ``DNSHandler.udplen`` defaults to 0, i.e. replies are never truncated, however large; we truncate to the
  client's advertised size (512 bytes, or its EDNS payload size) as a real server must.
- ``DNSRecord.truncate()`` drops the question section too, and dnspython ignores a NOERROR reply without the
  question (``Message.is_response`` is False), so the lookup would just time out. We keep the question.
- dnslib's own ``UDPServer`` sets SO_REUSEADDR, with which Linux lets two UDP sockets share a port; we bind
  without it so the port we pick is really ours.
- ``TXT`` refuses strings over 255 bytes instead of splitting them; we split (RFC 1035 character-strings).
"""

from __future__ import annotations

import ipaddress
import logging
import socketserver
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSError, DNSLabel, DNSRecord
from dnslib.server import DNSHandler, DNSLogger

log = logging.getLogger(__name__)

RECORD_TYPES = ("A", "AAAA", "MX", "TXT", "CNAME")
MAX_CNAME_CHAIN = 8
TIMEOUT = "TIMEOUT"  # set_failure(name, TIMEOUT): never answer, so the client times out


def _key(name: str) -> str:
    """Names compare case-insensitively and with or without the final dot."""
    return name.strip().rstrip(".").lower()


def _txt_chunks(value: str | bytes) -> list[bytes]:
    """A TXT value as the <=255-byte character-strings DNS carries (a 2048-bit DKIM key needs two)."""
    data = value.encode() if isinstance(value, str) else value
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


def _rdata(rtype: str, value: str | bytes) -> Any:
    """dnslib record data for ``value``, checked now so a typo fails in the test that made it."""
    if rtype == "TXT":
        return TXT(_txt_chunks(value))
    if not isinstance(value, str):
        raise TypeError(f"{rtype} value must be a str")
    if rtype == "A":
        return A(str(ipaddress.IPv4Address(value)))
    if rtype == "AAAA":
        return AAAA(str(ipaddress.IPv6Address(value)))
    if rtype == "MX":
        preference, _, host = value.strip().partition(" ")
        if not preference.isdigit() or not host.strip():
            raise ValueError(f"MX value {value!r} is not '<preference> <host>'")
        return MX(DNSLabel(host.strip()), int(preference))
    if rtype == "CNAME":
        return CNAME(DNSLabel(value.strip()))
    raise ValueError(f"record type {rtype!r} is not one of {RECORD_TYPES}")


@dataclass(frozen=True)
class _Record:
    rtype: str
    rdata: Any
    ttl: int


@dataclass(frozen=True)
class Query:
    """One question the server was asked, for tests that check how a lookup was made."""

    name: str
    rtype: str
    protocol: str  # "udp" or "tcp"


class _Drop(DNSError):  # type: ignore[misc]  # dnslib is untyped
    """Raised by the resolver to send no reply; dnslib's handler swallows DNSError without answering."""


class _ZoneResolver:
    """dnslib resolver over the server's record table (called from many handler threads at once)."""

    def __init__(self, server: DnsServer) -> None:
        self._server = server

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = str(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        self._server._note(Query(_key(qname), qtype, getattr(handler, "protocol", "?")))
        reply = request.reply()
        failure, records = self._server._lookup(qname)
        if failure == TIMEOUT:
            raise _Drop(f"dropping query for {qname} (set_failure TIMEOUT)")
        if failure is not None:
            reply.header.rcode = getattr(RCODE, failure)
            return reply
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        name = request.q.qname
        for _ in range(MAX_CNAME_CHAIN):
            wanted = [r for r in records if r.rtype == qtype]
            cname = [r for r in records if r.rtype == "CNAME"]
            if wanted or not cname or qtype == "CNAME":
                for record in wanted:
                    reply.add_answer(RR(name, getattr(QTYPE, record.rtype), rdata=record.rdata, ttl=record.ttl))
                break
            # An alias: answer with the CNAME and follow it while the target is ours, as an authoritative server does.
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=cname[0].rdata, ttl=cname[0].ttl))
            name = cname[0].rdata.label
            failure, target = self._server._lookup(str(name))
            if failure is not None or target is None:
                break
            records = target
        return reply


def _udp_limit(request: DNSRecord) -> int:
    """The largest UDP reply the client accepts: its EDNS payload size, else the classic 512 bytes."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, int(rr.rclass))
    return 512


class _Handler(DNSHandler):  # type: ignore[misc]  # dnslib is untyped
    """dnslib's handler, but truncating oversized UDP replies the way resolvers expect (question kept, TC set)."""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        self.server.logger.log_reply(self, reply)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and len(packed) > _udp_limit(request):
            truncated = request.reply()
            truncated.header.tc = 1
            truncated.header.rcode = reply.header.rcode
            packed = truncated.pack()
        return packed


class _UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = False
    resolver: _ZoneResolver  # read by dnslib's handler as self.server.resolver / .logger
    logger: DNSLogger


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True  # safe for TCP: Linux still refuses a port someone is listening on
    resolver: _ZoneResolver
    logger: DNSLogger


class DnsServer:
    """Authoritative answers for whatever names a test adds, on ``address`` (``127.0.0.1:<port>``).

    Unknown names get NXDOMAIN, known names without the asked type NOERROR with no answer (NODATA), names given
    to ``set_failure`` the chosen rcode (e.g. SERVFAIL) or, with ``TIMEOUT``, no reply at all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[_Record]] = {}
        self._failures: dict[str, str] = {}
        self._queries: list[Query] = []
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._port = 0

    # -- records --------------------------------------------------------------------------------------------

    def add(self, name: str, rtype: str, value: str | bytes, ttl: int = 60) -> None:
        """Add one record; several records of one type for a name form an RRset."""
        rtype = rtype.upper()
        record = _Record(rtype, _rdata(rtype, value), ttl)
        with self._lock:
            self._records.setdefault(_key(name), []).append(record)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Forget a name's records of ``rtype`` (the name stays known: NODATA), or the whole name (NXDOMAIN)."""
        key = _key(name)
        with self._lock:
            if rtype is None:
                self._records.pop(key, None)
                self._failures.pop(key, None)
            elif key in self._records:
                self._records[key] = [r for r in self._records[key] if r.rtype != rtype.upper()]

    def clear(self) -> None:
        """Forget every record, failure and logged query."""
        with self._lock:
            self._records.clear()
            self._failures.clear()
            self._queries.clear()

    def set_failure(self, name: str, rcode: str | int | None = "SERVFAIL") -> None:
        """Answer every question about ``name`` with ``rcode`` ("SERVFAIL", "REFUSED", an int, or ``TIMEOUT`` for
        silence); None answers normally again."""
        key = _key(name)
        with self._lock:
            if rcode is None:
                self._failures.pop(key, None)
                return
            text = rcode.upper() if isinstance(rcode, str) else RCODE[rcode]
            if text != TIMEOUT and not hasattr(RCODE, text):
                raise ValueError(f"unknown rcode {rcode!r}")
            self._failures[key] = text

    @property
    def queries(self) -> list[Query]:
        """Every question asked so far, oldest first."""
        with self._lock:
            return list(self._queries)

    def _note(self, query: Query) -> None:
        with self._lock:
            self._queries.append(query)

    def _lookup(self, name: str) -> tuple[str | None, list[_Record] | None]:
        """(failure rcode or None, the name's records or None when the name is unknown)."""
        key = _key(name)
        with self._lock:
            records = self._records.get(key)
            return self._failures.get(key), (list(records) if records is not None else None)

    # -- serving --------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("DnsServer is not started")
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the form POSTROOM_DNS_SERVER and ``make_resolver`` take."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        """Bind UDP and TCP on one free port (retrying when another process holds the TCP side) and serve."""
        if self._servers:
            raise RuntimeError("DnsServer already started")
        udp, tcp = self._bind()
        logger = DNSLogger(log="error", prefix=False, logf=log.debug)
        for server in (udp, tcp):
            server.resolver = _ZoneResolver(self)
            server.logger = logger
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"dns-{self._port}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def _bind(self, attempts: int = 50) -> tuple[_UDPServer, _TCPServer]:
        last: OSError | None = None
        for _ in range(attempts):
            udp = _UDPServer(("127.0.0.1", 0), _Handler)
            port = int(udp.server_address[1])
            try:
                tcp = _TCPServer(("127.0.0.1", port), _Handler)
            except OSError as exc:
                udp.server_close()
                last = exc
                continue
            self._port = port
            return udp, tcp
        raise RuntimeError(f"no port free for both UDP and TCP after {attempts} tries: {last}")

    def stop(self) -> None:
        """Stop serving and release the port; records are kept."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        self._port = 0

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["TIMEOUT", "DnsServer", "Query"]
