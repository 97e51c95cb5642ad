"""The SMTP listeners: submission with the API key as password (STARTTLS and implicit TLS), and bounce intake.

**Submission** (``POSTROOM_SMTP_PORT``, STARTTLS; ``POSTROOM_SMTPS_PORT``, implicit TLS) is for applications that
only speak SMTP. ``AUTH PLAIN`` and ``AUTH LOGIN`` take the username ``lettr`` (any other is accepted, with a
warning in the log) and an API key as the password. Keys follow exactly the API's rules, through the API's own
``Authenticator``: an invalid or revoked key (535), an address outside the key's allowlist (550 with Lettr's
message), and from an address blocked after repeated failures anything but a valid key (454/451); every failure is
recorded for the logs page and counts toward the same lockout as HTTP.
The key is checked again at every ``MAIL FROM``, so a revocation or allowlist change applies to the next message
of an open session too. No AUTH (and no mail) before STARTTLS unless ``POSTROOM_SMTP_ALLOW_PLAIN=1``.

A message becomes a send through ``emails.submission.submit_send``, the code behind ``POST /api/emails``: same
validation, domain approval, suppression, events, webhooks and ``Idempotency-Key`` handling. The 250 comes only
after the send is committed; a refusal names the reason in the reply text.

**Bounce intake** (``POSTROOM_BOUNCE_PORT``) is the MX of the return-path host. It needs no AUTH and accepts mail
only for VERP addresses whose token verifies (and the bare ``bounces@`` address), reads DSNs and ARF reports
(``reports.py``) and records them (``bounces.py``). Anything else is accepted and ignored, so a mail server never
keeps retrying an auto-reply at us.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import socket
import ssl
import warnings
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from postroom.apikeys.guard import Attempt, Authenticator
from postroom.apikeys.service import ApiKeyRecord
from postroom.auth.client_ip import client_ip
from postroom.auth.ratelimit import RateLimiter
from postroom.auth.scopes import Scope
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.db.engine import Database
from postroom.db.errors import database_unavailable
from postroom.delivery.return_path import VERP_PREFIX, parse_envelope_recipient
from postroom.emails import idempotency
from postroom.emails.submission import submit_send
from postroom.errors import DatabaseUnavailable, PostroomError, RateLimitExceeded, ValidationFailed
from postroom.messages.request import MAX_RECIPIENTS, is_valid_address
from postroom.relay.bounces import record_report
from postroom.relay.message import read_submission
from postroom.relay.reports import parse_report
from postroom.relay.tls import server_context

log = logging.getLogger("postroom.relay")

USERNAME = "lettr"
SUBMISSION_SIZE_LIMIT = 16 * 1024 * 1024
"""Bytes of one submitted message: the API's 10 MB of base64 attachments and 5 MB bodies, in MIME."""
BOUNCE_SIZE_LIMIT = 10 * 1024 * 1024
_IDENT = "Postroom ESMTP"


def _printable(text: str, limit: int = 400) -> str:
    """Reply text is one line of ASCII: anything else (from a header name, say) becomes ``?``."""
    flat = "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))
    return flat[:limit]


def smtp_reply(status: int, body: Mapping[str, Any], *, during_auth: bool = False) -> str:
    """The SMTP reply for a Lettr API response (status and body), so both transports say the same thing."""
    message = str(body.get("message", ""))
    if 200 <= status < 300:
        data = body.get("data") or {}
        return _printable(
            f"250 2.0.0 Queued as {data.get('request_id')} "
            f"(accepted {data.get('accepted')}, rejected {data.get('rejected')})"
        )
    if status == 401:
        return _printable(f"535 5.7.8 {message}")
    if status == 403:
        return _printable(f"550 5.7.1 {message}")
    if status == 429:
        return _printable(f"{454 if during_auth else 451} 4.7.0 {message}")
    if status == 400:  # the sender domain
        return _printable(f"550 5.7.1 {message}")
    if status == 422:
        errors = body.get("errors") or {}
        details = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in errors.items())
        return _printable(f"554 5.6.0 {message} {details}".strip())
    if status == 409 and body.get("error_code") == "idempotency_in_progress":
        return _printable(f"451 4.7.0 {message}")
    if status >= 500:
        return _printable(f"451 4.3.0 {message or 'Temporary failure, try again later.'}")
    return _printable(f"554 5.7.0 {message}")


def _error_reply(error: PostroomError, *, during_auth: bool = False) -> str:
    return smtp_reply(error.status, error.body(), during_auth=during_auth)


@dataclass
class _Login:
    """What a successful AUTH leaves on the session (a STARTTLS replaces the session, and so forgets it)."""

    username: str
    token: str
    key: ApiKeyRecord | None = None
    """The key as checked at the current transaction's ``MAIL FROM``."""


def _peer_ip(session: Session) -> Any:
    peer = session.peer
    host = peer[0] if isinstance(peer, tuple) else peer
    return client_ip(str(host) if host else None, (), ())


class SubmissionHandler:
    """aiosmtpd hooks of the submission listeners (shared by every connection; state lives on the session)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        authenticator: Authenticator,
        wake: Callable[[], None],
        rate_limiter: RateLimiter,
    ) -> None:
        self._db = db
        self._settings = settings
        self._authenticator = authenticator
        self._wake = wake
        self._rate_limiter = rate_limiter

    async def _check(self, session: Session, token: str, what: str) -> ApiKeyRecord:
        """The key's record, or a ``PostroomError`` (``DatabaseUnavailable`` when its lookup could not be made)."""
        attempt = Attempt(
            token=token or None,
            ip=_peer_ip(session),
            required=Scope.EMAILS_SEND,
            method="SMTP",
            path=what,
            user_agent=f"EHLO {session.host_name}"[:255] if session.host_name else None,
        )
        try:
            return await self._authenticator.authenticate(attempt)
        except Exception as exc:
            if database_unavailable(exc):
                raise DatabaseUnavailable() from exc
            raise

    async def _login(self, server: SMTP, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        assert server.session is not None
        username = login.decode("utf-8", errors="replace")
        token = password.decode("utf-8", errors="replace").strip()
        try:
            await self._check(server.session, token, f"AUTH {mechanism}")
        except PostroomError as error:
            await server.push(_error_reply(error, during_auth=True))
            return AuthResult(success=False, handled=True)
        if username != USERNAME:
            log.warning(
                "SMTP login with a username other than lettr; the key decides",
                extra={"username": username[:64], "ip": str(_peer_ip(server.session))},
            )
        return AuthResult(success=True, auth_data=_Login(username=username, token=token))

    @staticmethod
    async def _initial_response(server: SMTP, args: list[str], prompt: str) -> bytes | None:
        """The client's first answer: given with the AUTH command (base64), or asked for with ``prompt``; None
        when the client cancelled or sent something that is not base64 (already answered)."""
        if len(args) == 1:
            response = await server.challenge_auth(prompt)
            if response is MISSING:
                return None
            assert isinstance(response, bytes)
            return response
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await server.push("501 5.5.2 Can't decode base64")
            return None

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd's hook name
        """RFC 4616: ``[authzid] NUL login NUL password``, with the command or after an empty challenge."""
        response = await self._initial_response(server, args, "")
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await server.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._login(server, "PLAIN", parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd's hook name
        """The username (with the command or asked for), then the password, each base64."""
        login = await self._initial_response(server, args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(password, bytes)
        return await self._login(server, "LOGIN", login, password)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        login = session.auth_data
        if not isinstance(login, _Login):
            return "530 5.7.0 Authentication required"
        try:
            login.key = await self._check(session, login.token, "MAIL FROM")
        except PostroomError as error:
            login.key = None
            return _error_reply(error)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not is_valid_address(address):
            return "553 5.1.3 The recipient must be a valid email address."
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 A message may have at most {MAX_RECIPIENTS} recipients."
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        login = session.auth_data
        if not isinstance(login, _Login) or login.key is None:
            return "530 5.7.0 Authentication required"
        key = login.key
        raw = envelope.original_content or b""
        try:
            # The team's send rate limit counts SMTP messages as it counts POST /api/emails.
            verdict = await self._rate_limiter.hit(key.team_id, Scope.EMAILS_SEND)
            if verdict is not None and verdict.retry_after is not None:
                return _error_reply(RateLimitExceeded(verdict.retry_after))
            submission = read_submission(
                raw if isinstance(raw, bytes) else raw.encode(),
                mail_from=envelope.mail_from or "",
                envelope_recipients=list(envelope.rcpt_tos),
            )
            submitted = await submit_send(
                self._db,
                team_id=key.team_id,
                api_key_id=key.id,
                body=submission.body,
                idempotency_key=idempotency.check_key(submission.idempotency_key),
                mail_hostname=self._settings.mail_hostname,
                recv_method="esmtp",
                undisclosed_to=True,
                sandbox=key.sandbox,
            )
        except PostroomError as error:
            if not isinstance(error, ValidationFailed):
                log.info("SMTP message refused", extra={"key_prefix": key.display_prefix, "reason": error.message})
            return _error_reply(error)
        except Exception as exc:
            if database_unavailable(exc):
                log.warning("SMTP message refused: database unavailable", extra={"key_prefix": key.display_prefix})
            else:
                log.exception("SMTP message could not be accepted", extra={"key_prefix": key.display_prefix})
            return "451 4.3.0 Temporary failure, try again later."
        if not submitted.replayed:
            self._wake()
        return smtp_reply(submitted.status, submitted.body)


class BounceHandler:
    """aiosmtpd hooks of the bounce intake listener."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    def _accepts(self, address: str) -> bool:
        if parse_envelope_recipient(self._settings, address) is not None:
            return True
        return address.strip().strip("<>").lower() == f"{VERP_PREFIX}@{self._settings.bounce_host}".lower()

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [r for r in responses if not r[4:].upper().startswith("AUTH")]  # nobody logs in here

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self._accepts(address):
            return "550 5.1.1 No such mailbox here."
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients."
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        report = parse_report(raw if isinstance(raw, bytes) else raw.encode())
        peer = str(_peer_ip(session))
        if report is None:
            log.info("bounce listener: not a delivery or feedback report, ignored", extra={"ip": peer})
            return "250 2.0.0 OK (not a report; ignored)"
        settings = self._settings
        recipient_ids = [
            rid for rid in (parse_envelope_recipient(settings, r) for r in envelope.rcpt_tos) if rid is not None
        ]
        try:
            recorded = await self._db.write(
                lambda conn: record_report(
                    conn, report=report, recipient_ids=recipient_ids, report_to=settings.bounce_host, now=utcnow()
                )
            )
        except Exception:
            log.exception("bounce report could not be recorded", extra={"ip": peer})
            return "451 4.3.0 Temporary failure, try again later."
        log.info(
            "bounce report recorded",
            extra={
                "ip": peer,
                "report": report.kind.value,
                "events": [f"{r.event_type}:{r.recipient_id}" for r in recorded],
            },
        )
        return "250 2.0.0 OK"


@dataclass(frozen=True, slots=True)
class ListenerPorts:
    """The enabled listeners' ports (a port of 0 means that listener is off)."""

    submission: int
    submissions: int
    bounce: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ListenerPorts:
        return cls(submission=settings.smtp_port, submissions=settings.smtps_port, bounce=settings.bounce_port)

    def enabled(self) -> dict[str, int]:
        named = {"submission": self.submission, "submissions": self.submissions, "bounce": self.bounce}
        return {name: port for name, port in named.items() if port}


class SmtpListeners:
    """Running listeners on sockets the caller bound (so a port in use fails before anything starts)."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self._servers = servers

    async def close(self, timeout: float = 10.0) -> None:
        """Stop accepting connections; give open sessions ``timeout`` seconds (an idle client could hold one for
        aiosmtpd's five-minute command timeout). A message is acknowledged only after its commit, so a session cut
        short loses nothing: its client sends again."""
        for server in self._servers:
            server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in self._servers)), timeout)


async def start_listeners(
    settings: Settings,
    db: Database,
    sockets: Mapping[str, socket.socket],
    *,
    wake: Callable[[], None] = lambda: None,
    authenticator: Authenticator | None = None,
    rate_limiter: RateLimiter | None = None,
) -> SmtpListeners:
    """Serve each of ``sockets`` (keys as in ``ListenerPorts.enabled``) on the running event loop.

    ``rate_limiter`` is the API's when both run in one process, so a team's sends share one window."""
    # aiosmtpd logs every command at INFO and warns about AUTH without STARTTLS on each connection, which on the
    # implicit-TLS port (TLS from the first byte) and with POSTROOM_SMTP_ALLOW_PLAIN is intended; its own errors
    # are still logged.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS", module="aiosmtpd")
    loop = asyncio.get_running_loop()
    context = server_context(settings)
    limiter = rate_limiter or RateLimiter.from_settings(settings)
    submission = SubmissionHandler(db, settings, authenticator or Authenticator(db, settings), wake, limiter)
    bounce = BounceHandler(db, settings)
    plain = settings.smtp_allow_plain

    def submission_smtp(tls_context: ssl.SSLContext | None, *, implicit_tls: bool) -> Callable[[], SMTP]:
        return lambda: SMTP(
            submission,
            hostname=settings.mail_hostname,
            ident=_IDENT,
            tls_context=tls_context,
            require_starttls=not implicit_tls and not plain,
            auth_required=True,
            auth_require_tls=not implicit_tls and not plain,  # implicit TLS is TLS already
            data_size_limit=SUBMISSION_SIZE_LIMIT,
            loop=loop,
        )

    def bounce_smtp() -> SMTP:
        return SMTP(
            bounce,
            hostname=settings.mail_hostname,
            ident=_IDENT,
            tls_context=context,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
            data_size_limit=BOUNCE_SIZE_LIMIT,
            loop=loop,
        )

    servers: list[asyncio.Server] = []
    try:
        for name, sock in sockets.items():
            if name == "submission":
                servers.append(await loop.create_server(submission_smtp(context, implicit_tls=False), sock=sock))
            elif name == "submissions":
                servers.append(
                    await loop.create_server(submission_smtp(None, implicit_tls=True), sock=sock, ssl=context)
                )
            elif name == "bounce":
                servers.append(await loop.create_server(bounce_smtp, sock=sock))
            else:
                raise ValueError(f"unknown SMTP listener {name!r}")
    except BaseException:
        await SmtpListeners(servers).close()
        raise
    return SmtpListeners(servers)
