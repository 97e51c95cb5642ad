"""One SMTP session to a recipient domain's mail server (or the configured relay) for one message.

All of a message's recipients at one domain go in one session (one ``MAIL FROM``, several ``RCPT TO``). MX hosts
are tried in preference order, each of their addresses in turn; TLS is used whenever the server offers STARTTLS
(opportunistic, RFC 7435, so certificates are not checked on port 25). Every outcome is classified per recipient:
delivered, or a temporary or permanent failure (``classify.py``).
"""

from __future__ import annotations

import logging
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
    host: str | None = None
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


def _all(recipients: list[str], outcome: Outcome) -> SessionResult:
    return SessionResult(failed=dict.fromkeys(recipients, outcome))


async def deliver(
    *,
    message: bytes,
    envelope_from: str,
    recipients: list[str],
    domain: str,
    settings: Settings,
    resolver: dns.asyncresolver.Resolver,
) -> SessionResult:
    """Hand ``message`` to the mail server for ``domain``; each recipient ends delivered or with an ``Outcome``."""
    try:
        targets = (
            _relay_targets(settings.relay_url) if settings.relay_url else await _mx_targets(domain, settings, resolver)
        )
    except MxLookupError as exc:
        return _all(recipients, classify_connection_error(exc.kind, str(exc)))
    if not targets:
        return _all(recipients, classify_connection_error("no_mx", f"no address for the mail servers of {domain}"))

    last = classify_connection_error("connect", f"could not connect to any mail server of {domain}")
    for target in targets:
        client = aiosmtplib.SMTP(
            hostname=target.address,
            port=target.port,
            local_hostname=settings.mail_hostname,
            timeout=settings.smtp_timeout_seconds,
            use_tls=target.use_tls,
            start_tls=None if not target.use_tls else False,
            validate_certs=bool(settings.relay_url),
            username=target.username,
            password=target.password,
        )
        try:
            await client.connect()
            try:
                errors, _ = await client.sendmail(envelope_from, recipients, message)
                tls = client.is_connected and bool(client.get_transport_info("sslcontext"))
            finally:
                try:
                    await client.quit()
                except aiosmtplib.SMTPException:
                    client.close()
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return SessionResult(
                failed={r.recipient: classify_reply(r.code, r.message) for r in exc.recipients}, host=target.host
            )
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError, aiosmtplib.SMTPHeloError) as exc:
            outcome = classify_reply(exc.code, exc.message)
            if outcome.kind is OutcomeKind.PERMANENT:
                return SessionResult(failed=dict.fromkeys(recipients, outcome), host=target.host)
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
        result = SessionResult(host=target.host, tls=tls)
        for recipient in recipients:
            if recipient in errors:
                result.failed[recipient] = classify_reply(errors[recipient].code, errors[recipient].message)
            else:
                result.delivered.append(recipient)
        return result
    return _all(recipients, last)
