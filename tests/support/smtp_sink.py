"""A real SMTP server on loopback (aiosmtpd) that records what it receives and misbehaves on request.

Tests of the delivery worker point it at ``127.0.0.1:<sink.port>`` and script the replies: refuse a recipient for
good, defer one a few times, fail DATA, offer STARTTLS with a certificate from a throwaway CA.

aiosmtpd details this relies on:

- ``Controller.start()`` connects to the server it just started and reads the banner, to make aiosmtpd build its
  lazily-created SMTP instance. With ``port=0`` it would connect to port 0, so ``_SinkController`` records the
  port the kernel chose before that check runs. The check is a connection that never says EHLO, so it is not
  counted in ``sessions``.
- The banner name defaults to ``socket.getfqdn()``, a reverse DNS lookup that can stall for seconds in a
  sandbox; we always pass one.
- A handler's ``handle_RCPT`` that returns a reply must add the address to ``envelope.rcpt_tos`` itself.
- STARTTLS replaces the ``Session`` object (RFC 3207 §4.2 state reset); ``session.ssl`` is set on the new one.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

BANNER_HOSTNAME = "sink.postroom.test"


@dataclass
class ReceivedMessage:
    """One accepted message: envelope, raw bytes after dot-unstuffing, client IP, and whether STARTTLS was used."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str
    tls: bool
    received_at: float = field(default_factory=time.monotonic, compare=False)
    """``time.monotonic()`` when DATA was accepted."""


@dataclass
class _Deferral:
    remaining: int
    reply: str


def _reply(code: int, message: str) -> str:
    if not 200 <= code <= 599:
        raise ValueError(f"SMTP reply code {code} is not 2xx-5xx")
    return f"{code} {message}"


def _mailbox(address: str) -> str:
    """Scripts match addresses case-insensitively and with or without angle brackets."""
    return address.strip().strip("<>").lower()


class _Handler:
    """aiosmtpd hooks; they run on the sink's event loop thread and consult the sink's scripts under its lock."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        self._sink._count_session(server)
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self._sink._count_session(server)
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._sink._rcpt_reply(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        while self._sink._holding():  # a tarpit: the reply to DATA is held back
            await asyncio.sleep(0.05)
        failure = self._sink._data_reply()
        if failure is not None:
            return failure
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        data = envelope.original_content or b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=data if isinstance(data, bytes) else data.encode(),
            peer=peer,
            tls=session.ssl is not None,
        )
        number = self._sink._record(message)
        return f"250 2.0.0 OK queued as sink-{number}"


class _SinkController(Controller):
    """aiosmtpd's threaded controller, able to listen on port 0 (see the module docstring)."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        for _ in range(20):
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
            )
            ports = {sock.getsockname()[1] for sock in server.sockets}
            if len(ports) == 1:
                self.port = ports.pop()
                return server
            # "localhost" on port 0 gives ::1 and 127.0.0.1 different ports; pin one and bind again.
            server.close()
            await server.wait_closed()
            self.port = min(ports)
        raise OSError(f"could not bind {self.hostname} on one port for every address")


class SmtpSink:
    """SMTP on ``hostname:port`` (port 0: any free port, see ``port`` after ``start()``) in a background thread."""

    def __init__(self, *, hostname: str = "127.0.0.1", port: int = 0, starttls: bool = False) -> None:
        self.hostname = hostname
        self._requested_port = port
        self.starttls = starttls
        self._controller: _SinkController | None = None
        self._port = 0
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._rejections: dict[str, str] = {}
        self._deferrals: dict[str, _Deferral] = {}
        self._data_failures: list[str] = []
        self._hold_until = 0.0
        self._rcpt_attempts: dict[str, int] = {}
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._session_count = 0
        self._accepted = 0
        self.ca: trustme.CA | None = None
        self._server_context: ssl.SSLContext | None = None
        if starttls:
            self.ca = trustme.CA()
            names = ["127.0.0.1", "localhost", "::1"]
            if hostname and hostname not in names:
                names.append(hostname)
            self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(*names).configure_cert(self._server_context)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and serve; returns once the server answers (``port`` is then the real port)."""
        if self._controller is not None:
            raise RuntimeError("SmtpSink already started")
        kwargs: dict[str, Any] = {}
        if self._server_context is not None:
            kwargs.update(tls_context=self._server_context, require_starttls=False)
        controller = _SinkController(
            _Handler(self),
            hostname=self.hostname,
            port=self._requested_port,
            ready_timeout=10.0,
            server_hostname=BANNER_HOSTNAME,
            **kwargs,
        )
        controller.start()
        self._controller = controller
        self._port = int(controller.port)
        return self

    def stop(self) -> None:
        """Stop serving and free the port; what was received stays readable."""
        self.hold_data(0)
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("SmtpSink is not started")
        return self._port

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the sink's throwaway CA, for tests that validate certificates."""
        if self.ca is None:
            raise RuntimeError("SmtpSink was made without starttls=True")
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    # -- what arrived ---------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages accepted so far, oldest first (a copy)."""
        with self._cond:
            return list(self._messages)

    @property
    def sessions(self) -> int:
        """SMTP sessions: connections that said EHLO or HELO (a STARTTLS re-EHLO is the same session)."""
        with self._cond:
            return self._session_count

    def rcpt_attempts(self, address: str) -> int:
        """How many RCPT TO commands named ``address``, whatever the reply."""
        with self._cond:
            return self._rcpt_attempts.get(_mailbox(address), 0)

    def wait_for(self, count: int, timeout: float = 10) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; AssertionError (with what did arrive) on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    summary = [(m.mail_from, m.rcpt_tos) for m in self._messages]
                    raise AssertionError(
                        f"SMTP sink expected {count} message(s) within {timeout}s, got {len(self._messages)}: "
                        f"{summary}; {self._session_count} session(s), RCPT attempts {self._rcpt_attempts}"
                    )
                self._cond.wait(remaining)
            return list(self._messages)

    def clear(self) -> None:
        """Forget messages, scripts and counters; the server keeps running."""
        with self._cond:
            self._messages.clear()
            self._rejections.clear()
            self._deferrals.clear()
            self._data_failures.clear()
            self._hold_until = 0.0
            self._rcpt_attempts.clear()
            self._sessions = weakref.WeakSet()
            self._session_count = 0

    # -- scripting ------------------------------------------------------------------------------------------

    def reject_recipient(self, address: str, code: int = 550, message: str = "5.1.1 No such user") -> None:
        """Every RCPT TO for ``address`` gets this reply."""
        with self._cond:
            self._rejections[_mailbox(address)] = _reply(code, message)

    def defer_recipient(
        self, address: str, times: int, code: int = 451, message: str = "4.3.0 Try again later"
    ) -> None:
        """The next ``times`` RCPT TO for ``address`` get this reply; later ones are accepted."""
        with self._cond:
            self._deferrals[_mailbox(address)] = _Deferral(times, _reply(code, message))

    def fail_data(self, times: int, code: int = 451, message: str = "4.3.0 Temporary failure") -> None:
        """The next ``times`` DATA commands (after the message is sent) get this reply instead of acceptance."""
        with self._cond:
            self._data_failures = [_reply(code, message)] * times

    def hold_data(self, seconds: float) -> None:
        """Hold back the reply to every DATA for up to ``seconds`` from now (a tarpit); 0 answers at once again."""
        with self._cond:
            self._hold_until = time.monotonic() + seconds

    # -- called by the handler on the server thread ---------------------------------------------------------

    def _holding(self) -> bool:
        with self._cond:
            return time.monotonic() < self._hold_until

    def _count_session(self, server: SMTP) -> None:
        with self._cond:
            if server not in self._sessions:
                self._sessions.add(server)
                self._session_count += 1

    def _rcpt_reply(self, address: str) -> str | None:
        key = _mailbox(address)
        with self._cond:
            self._rcpt_attempts[key] = self._rcpt_attempts.get(key, 0) + 1
            if key in self._rejections:
                return self._rejections[key]
            deferral = self._deferrals.get(key)
            if deferral is not None and deferral.remaining > 0:
                deferral.remaining -= 1
                return deferral.reply
            return None

    def _data_reply(self) -> str | None:
        with self._cond:
            return self._data_failures.pop(0) if self._data_failures else None

    def _record(self, message: ReceivedMessage) -> int:
        with self._cond:
            self._messages.append(message)
            self._accepted += 1
            self._cond.notify_all()
            return self._accepted


__all__ = ["ReceivedMessage", "SmtpSink"]
