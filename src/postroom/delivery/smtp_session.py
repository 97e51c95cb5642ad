"""One SMTP session to a recipient domain's mail server (or the configured relay) for one message.

All of a message's recipients at one domain go through one session: one ``MAIL FROM`` transaction per envelope
sender (per recipient with VERP, ``return_path.py``), and sessions are kept open for the next message to the same
server (``ConnectionPool``). MX hosts are tried in preference order, each of their addresses in turn; TLS is used
whenever the server offers STARTTLS (opportunistic, RFC 7435, so certificates are not checked on port 25). Every
outcome is classified per recipient: delivered, or a temporary or permanent failure (``classify.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import aiosmtplib
import dns.asyncresolver

from postroom.config import Settings
from postroom.delivery.classify import Outcome, OutcomeKind, classify_connection_error, classify_reply
from postroom.delivery.mx import MxLookupError, resolve_addresses, resolve_mx

log = logging.getLogger("postroom.delivery")


@dataclass
class SessionResult:
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, Outcome] = field(default_factory=dict)
    tls: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    address: str
    port: int
    use_tls: bool = False
    username: str | None = None
    password: str | None = None


def _relay_targets(url: str) -> list[_Target]:
    parts = urlsplit(url)
    implicit_tls = parts.scheme == "smtps"
    return [
        _Target(
            host=parts.hostname or "localhost",
            address=parts.hostname or "localhost",
            port=parts.port or (465 if implicit_tls else 587),
            use_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    ]


async def _mx_targets(domain: str, settings: Settings, resolver: dns.asyncresolver.Resolver) -> list[_Target]:
    targets: list[_Target] = []
    for mx in await resolve_mx(domain, resolver):
        try:
            addresses = await resolve_addresses(mx.host, resolver)
        except MxLookupError:
            continue
        targets.extend(_Target(host=mx.host, address=a, port=settings.mx_port) for a in addresses)
    return targets


class ConnectionPool:
    """Open SMTP sessions kept for the next message to the same server (address, port).

    A session that delivered is handed back and reused for up to ``idle_seconds``; one that raised anything is
    closed. ``per_server`` caps the sessions open to one server at once, so a worker never floods one MX.
    """

    def __init__(self, settings: Settings, *, idle_seconds: float = 30.0, per_server: int = 10) -> None:
        self._settings = settings
        self._idle_seconds = idle_seconds
        self._per_server = per_server
        self._idle: dict[tuple[str, int], list[tuple[float, aiosmtplib.SMTP]]] = {}
        self._limits: dict[tuple[str, int], asyncio.Semaphore] = {}

    def _limit(self, target: _Target) -> asyncio.Semaphore:
        key = (target.address, target.port)
        if key not in self._limits:
            self._limits[key] = asyncio.Semaphore(self._per_server)
        return self._limits[key]

    def _take_idle(self, target: _Target) -> aiosmtplib.SMTP | None:
        idle = self._idle.get((target.address, target.port), [])
        now = time.monotonic()
        while idle:
            since, client = idle.pop()
            if now - since < self._idle_seconds and client.is_connected:
                return client
            client.close()
        return None

    async def _connect(self, target: _Target) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=target.address,
            port=target.port,
            local_hostname=self._settings.mail_hostname,
            timeout=self._settings.smtp_timeout_seconds,
            use_tls=target.use_tls,
            start_tls=None if not target.use_tls else False,
            # Opportunistic TLS to MX hosts (RFC 7435); a relay the operator configured must prove who it is.
            validate_certs=bool(self._settings.relay_url),
            username=target.username,
            password=target.password,
        )
        await client.connect()
        return client

    async def send(
        self, target: _Target, envelope_from: str, recipients: list[str], message: bytes
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], bool]:
        """One transaction on a reused or new session: the per-recipient refusals, and whether TLS was on."""
        async with self._limit(target):
            client = self._take_idle(target)
            if client is not None:
                try:
                    return await self._transaction(target, client, envelope_from, recipients, message)
                except aiosmtplib.SMTPServerDisconnected:
                    pass  # the server closed an idle session: try once on a new one
            client = await self._connect(target)
            return await self._transaction(target, client, envelope_from, recipients, message)

    async def _transaction(
        self, target: _Target, client: aiosmtplib.SMTP, envelope_from: str, recipients: list[str], message: bytes
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], bool]:
        try:
            errors = await _sendmail(client, envelope_from, recipients, message)
        except aiosmtplib.SMTPRecipientsRefused:
            # aiosmtplib sent RSET, so the session is clean: the next recipient (VERP) can use it.
            if client.is_connected:
                self._idle.setdefault((target.address, target.port), []).append((time.monotonic(), client))
            raise
        except BaseException:
            client.close()
            raise
        tls = bool(client.get_transport_info("sslcontext"))
        self._idle.setdefault((target.address, target.port), []).append((time.monotonic(), client))
        return errors, tls

    async def close(self) -> None:
        for idle in self._idle.values():
            for _, client in idle:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        self._idle.clear()


async def _sendmail(
    client: aiosmtplib.SMTP, sender: str, recipients: list[str], message: bytes
) -> dict[str, aiosmtplib.SMTPResponse]:
    """``SMTP.sendmail`` for addresses Postroom has already checked: the same MAIL (with SIZE), RCPT and DATA, the
    same exceptions, the refused recipients by address, and RSET after a refusal.

    Every address here passed ``is_valid_address`` when the send was accepted (bare ASCII ``local@domain``), or is
    Postroom's own return path, so it is sent as ``<address>``. ``sendmail`` parses each one with ``email.utils``
    twice and rewrites the message's line endings once more to measure it: together a tenth of a worker's time. The
    protocol layer still refuses any control character in a command.
    """
    completed, will_forward = aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    size = len(message) + (0 if message.endswith(b"\r\n") else 2)  # the renderer writes CRLF line endings
    options = [b"SIZE=%d" % size] if client.supports_extension("size") else []
    try:
        response = await client.execute_command(b"MAIL", b"FROM:<%s>" % sender.encode("ascii"), *options)
        if response.code != completed:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
        refused: dict[str, aiosmtplib.SMTPResponse] = {}
        for recipient in recipients:
            response = await client.execute_command(b"RCPT", b"TO:<%s>" % recipient.encode("ascii"))
            if response.code not in (completed, will_forward):
                refused[recipient] = response
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(r.code, r.message, address) for address, r in refused.items()]
            )
        await client.data(message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        try:
            await client.rset()  # leave the session clean for the next transaction
        except (ConnectionError, aiosmtplib.SMTPResponseException):
            pass
        raise
    return refused


def _all(recipients: list[str], outcome: Outcome) -> SessionResult:
    return SessionResult(failed=dict.fromkeys(recipients, outcome))


@dataclass(frozen=True, slots=True)
class Route:
    """Where a domain's mail goes: the servers to try in order, and the destination whose concurrency cap they
    share (the most preferred MX host, or the relay); or, in ``failure``, why DNS gives no server."""

    destination: str
    targets: list[_Target]
    relay: bool = False
    failure: Outcome | None = None


async def route(domain: str, settings: Settings, resolver: dns.asyncresolver.Resolver) -> Route:
    """The servers for ``domain``: the configured relay, or its MX hosts' addresses."""
    if settings.relay_url:
        targets = _relay_targets(settings.relay_url)
        return Route(destination=f"relay {targets[0].address}:{targets[0].port}", targets=targets, relay=True)
    try:
        targets = await _mx_targets(domain, settings, resolver)
    except MxLookupError as exc:
        return Route(domain, [], failure=classify_connection_error(exc.kind, str(exc)))
    if not targets:
        return Route(
            domain, [], failure=classify_connection_error("no_mx", f"no address for the mail servers of {domain}")
        )
    return Route(destination=targets[0].host.lower(), targets=targets)


async def deliver(
    *,
    message: bytes,
    envelope_from: str | Mapping[str, str],
    recipients: list[str],
    domain: str,
    route: Route,
    pool: ConnectionPool,
) -> SessionResult:
    """Hand ``message`` to the servers of ``route`` (for ``domain``); each recipient ends delivered or with an
    ``Outcome``.

    ``envelope_from`` is one sender for every recipient (one transaction), or each recipient's own sender (VERP,
    ``return_path.py``): then each sender gets its own ``MAIL FROM`` transaction on the same pooled session.
    """
    if route.failure is not None:
        return _all(recipients, route.failure)
    groups: dict[str, list[str]] = {}
    for recipient in recipients:
        sender = envelope_from if isinstance(envelope_from, str) else envelope_from[recipient]
        groups.setdefault(sender, []).append(recipient)
    result = SessionResult()
    pending = list(recipients)
    for sender, group in groups.items():
        outcome = await _deliver_group(message, sender, group, domain, route.targets, pool)
        result.delivered.extend(outcome.delivered)
        result.failed.update(outcome.failed)
        result.tls = result.tls or outcome.tls
        pending = [r for r in pending if r not in group]
        if outcome.unreachable is not None:  # no server took this one: do not wait for every timeout again
            result.failed.update(dict.fromkeys(pending, outcome.unreachable))
            break
    return result


@dataclass
class _GroupResult(SessionResult):
    unreachable: Outcome | None = None
    """Set when no server could be reached (or every one failed temporarily) for the whole group."""


async def _deliver_group(
    message: bytes, envelope_from: str, recipients: list[str], domain: str, targets: list[_Target], pool: ConnectionPool
) -> _GroupResult:
    last = classify_connection_error("connect", f"could not connect to any mail server of {domain}")
    for target in targets:
        try:
            errors, tls = await pool.send(target, envelope_from, recipients, message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return _GroupResult(failed={r.recipient: classify_reply(r.code, r.message) for r in exc.recipients})
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError, aiosmtplib.SMTPHeloError) as exc:
            outcome = classify_reply(exc.code, exc.message)
            if outcome.kind is OutcomeKind.PERMANENT:
                return _GroupResult(failed=dict.fromkeys(recipients, outcome))
            last = outcome
            continue
        except aiosmtplib.SMTPResponseException as exc:  # e.g. a 421 greeting
            last = classify_reply(exc.code, exc.message)
            continue
        except (TimeoutError, aiosmtplib.SMTPTimeoutError) as exc:
            last = classify_connection_error("timeout", f"{target.host}: {exc}")
            continue
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError, aiosmtplib.SMTPException) as exc:
            last = classify_connection_error("connect", f"{target.host} ({target.address}): {exc}")
            continue
        result = _GroupResult(tls=tls)
        for recipient in recipients:
            if recipient in errors:
                result.failed[recipient] = classify_reply(errors[recipient].code, errors[recipient].message)
            else:
                result.delivered.append(recipient)
        return result
    return _GroupResult(failed=dict.fromkeys(recipients, last), unreachable=last)
