"""The HTTP side of a webhook delivery: one POST to a checked address, never a redirect, never a proxy.

httpcore (httpx's transport layer) is used directly with a network backend that only dials addresses
``ssrf.resolve`` checked for this request: the URL keeps the host name, so ``Host``, TLS SNI and certificate
checks use the name while the socket goes to the pinned address; a host without a pin is refused rather than
resolved. httpcore follows no redirects and reads no proxy settings from the environment (SSRF-05, SSRF-06).

A delivery succeeds on a 2xx answered within ``TOTAL_TIMEOUT``. At most ``MAX_RESPONSE_READ`` bytes of the
answer are read, and ``EXCERPT_CHARS`` of it are kept for the delivery log.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import msgspec

from postroom import __version__
from postroom.webhooks import ssrf

TOTAL_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_RESPONSE_READ = 64 * 1024
EXCERPT_CHARS = 2000
USER_AGENT = f"Postroom-Webhooks/{__version__}"
TOKEN_REFRESH_MARGIN = 30.0

_PINNED: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("webhook_pins", default=None)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials the address checked for the current request's host, and nothing else."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pins = _PINNED.get()
        if not pins or host not in pins:
            raise httpcore.ConnectError(f"{host} was not checked for this request")
        return await self._inner.connect_tcp(
            pins[host], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never webhook destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the endpoint's ``auth_type`` asks for (already unsealed)."""

    auth_type: str
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened to one POST: a status (None when no answer came), the latency and what the log keeps."""

    status_code: int | None
    latency_ms: int
    excerpt: str | None = None
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _Failed(Exception):
    """A delivery attempt ended before an HTTP answer; ``str()`` goes to the delivery log."""


class WebhookSender:
    """Posts webhook batches from one worker process; keeps connections and OAuth2 tokens between deliveries."""

    def __init__(self, *, resolver: ssrf.HostResolver, allow_private: bool) -> None:
        self._resolver = resolver
        self._allow_private = allow_private
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=200,
            keepalive_expiry=30.0,
            retries=0,
            network_backend=_PinnedBackend(),
        )
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._token_locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def close(self) -> None:
        await self._pool.aclose()

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], credentials: Credentials, *, timeout: float
    ) -> Attempt:
        """POST ``body`` to ``url`` with ``headers`` plus the endpoint's credentials; never raises."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                extra = await self._authorization(credentials)
                status, answer = await self._request(url, body, {**headers, **extra})
        except ssrf.DestinationRefused as refused:
            return Attempt(None, _elapsed(started), error=refused.message)
        except TimeoutError:
            return Attempt(None, _elapsed(started), error=f"No answer within {timeout:g} s.")
        except _Failed as failed:
            return Attempt(None, _elapsed(started), error=str(failed))
        if status == 401 and credentials.auth_type == "oauth2":
            self._forget_token(credentials)  # the next attempt fetches a fresh token
        return Attempt(status, _elapsed(started), excerpt=answer.decode("utf-8", "replace")[:EXCERPT_CHARS])

    async def _request(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """The status and at most ``MAX_RESPONSE_READ`` bytes of the answer."""
        destination = await ssrf.resolve(url, resolver=self._resolver, allow_private=self._allow_private)
        target = destination.target
        request_headers = [
            ("Host", target.host_header),
            ("User-Agent", USER_AGENT),
            ("Content-Length", str(len(body))),
            *headers.items(),
        ]
        token = _PINNED.set({target.host: destination.address})
        try:
            async with self._pool.stream(
                "POST",
                httpcore.URL(scheme=target.scheme, host=target.host, port=target.port, target=target.path),
                headers=request_headers,
                content=body,
                extensions={
                    "timeout": {
                        "connect": CONNECT_TIMEOUT,
                        "read": TOTAL_TIMEOUT,
                        "write": TOTAL_TIMEOUT,
                        "pool": TOTAL_TIMEOUT,
                    },
                    "sni_hostname": target.host,
                },  # fmt: skip
            ) as response:
                received = bytearray()
                async for chunk in response.aiter_stream():
                    received += chunk
                    if len(received) >= MAX_RESPONSE_READ:
                        break
                return response.status, bytes(received[:MAX_RESPONSE_READ])
        except httpcore.TimeoutException as exc:
            raise _Failed(f"Timed out: {type(exc).__name__}.") from None
        except httpcore.ConnectError as exc:
            raise _Failed(f"Could not connect: {exc or 'connection refused'}.") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}"[:500]) from None
        finally:
            _PINNED.reset(token)

    async def _authorization(self, credentials: Credentials) -> dict[str, str]:
        if credentials.auth_type == "basic":
            pair = f"{credentials.username or ''}:{credentials.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if credentials.auth_type == "oauth2":
            return {"Authorization": "Bearer " + await self._token(credentials)}
        return {}

    def _token_key(self, credentials: Credentials) -> tuple[str, str, str]:
        return (credentials.token_url or "", credentials.client_id or "", credentials.client_secret or "")

    def _forget_token(self, credentials: Credentials) -> None:
        self._tokens.pop(self._token_key(credentials), None)

    async def _token(self, credentials: Credentials) -> str:
        """An OAuth2 client-credentials access token, fetched from ``token_url`` and cached until it expires.

        The token URL is customer-chosen too, so it goes through the same resolve-check-pin path.
        """
        key = self._token_key(credentials)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent deliveries to one endpoint share one token request
            cached = self._tokens.get(key)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            return await self._fetch_token(key, credentials)

    async def _fetch_token(self, key: tuple[str, str, str], credentials: Credentials) -> str:
        pair = f"{credentials.client_id or ''}:{credentials.client_secret or ''}".encode()
        form = b"grant_type=client_credentials"
        status, answer = await self._request(
            credentials.token_url or "",
            form,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "Authorization": "Basic " + base64.b64encode(pair).decode(),
            },
        )
        if not 200 <= status < 300:
            raise _Failed(f"The OAuth2 token request answered {status}.")
        try:
            token = msgspec.json.decode(answer)
            access_token = token["access_token"]
            lifetime = float(token.get("expires_in") or 3600)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise _Failed("The OAuth2 token response had no access_token.") from None
        if not isinstance(access_token, str) or not access_token:
            raise _Failed("The OAuth2 token response had no access_token.")
        self._tokens[key] = (access_token, time.monotonic() + max(0.0, lifetime - TOKEN_REFRESH_MARGIN))
        return access_token


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
