"""Dashboard sessions and CSRF: tokens, lifetimes, the cookie, and the checks every state-changing request passes.

- **Token.** 256 random bits from ``secrets``; the database keeps only its SHA-256 digest, so a leaked table does
  not hand out live sessions. A new token is issued at sign-in and at every step of it (password, then code).
- **Lifetimes** (ASVS 7.3, NIST AAL2): a session ends after 30 minutes without a request and 12 hours after the
  sign-in, whichever comes first. Sensitive changes need a proof of identity no older than 5 minutes.
- **Cookie.** ``__Host-postroom_session; Path=/; Secure; HttpOnly; SameSite=Lax`` whenever the dashboard is reached
  over HTTPS (directly, or through a trusted proxy that says ``X-Forwarded-Proto: https``). Browsers refuse
  ``__Host-`` and ``Secure`` cookies on plain HTTP, so a plain-HTTP dashboard (development on this machine) uses
  ``postroom_session`` without ``Secure``; ``plain_http_allowed`` limits that to clients on loopback, where the
  cookie never crosses a network.
- **CSRF**: every POST carries a token that is an HMAC of the session (or, before
  sign-in, of a random pre-session cookie) under a key derived from the server secret, *and* is refused when the
  browser says it comes from another site (``Sec-Fetch-Site: cross-site`` or a foreign ``Origin``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from postroom.core import crypto
from postroom.core.netaddr import IPAddress

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_LIFETIME = timedelta(hours=12)
REAUTH_WINDOW = timedelta(minutes=5)
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
"""``last_seen_at`` is written at most this often per session (it drives the idle timeout and the session list)."""

SECURE_SESSION_COOKIE = "__Host-postroom_session"
PLAIN_SESSION_COOKIE = "postroom_session"
SECURE_PRESESSION_COOKIE = "__Host-postroom_presession"
PLAIN_PRESESSION_COOKIE = "postroom_presession"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
_CSRF_PURPOSE = "dashboard-csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    """A session, invitation or pre-session token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database keeps of a token (hex SHA-256; a fast hash is right for 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """A cookie as the dashboard sets it. Always ``Path=/``, ``HttpOnly`` and no ``Domain`` (``__Host-`` needs both)."""

    name: str
    value: str
    secure: bool
    max_age: int | None
    same_site: str = "lax"


def session_cookie_name(*, secure: bool) -> str:
    return SECURE_SESSION_COOKIE if secure else PLAIN_SESSION_COOKIE


def presession_cookie_name(*, secure: bool) -> str:
    return SECURE_PRESESSION_COOKIE if secure else PLAIN_PRESESSION_COOKIE


def session_cookie(token: str, *, secure: bool) -> CookieSpec:
    """The session cookie: no ``Max-Age`` (it dies with the browser; the server enforces the real lifetimes)."""
    return CookieSpec(name=session_cookie_name(secure=secure), value=token, secure=secure, max_age=None)


def cleared_session_cookie(*, secure: bool) -> CookieSpec:
    return CookieSpec(name=session_cookie_name(secure=secure), value="", secure=secure, max_age=0)


def presession_cookie(nonce: str, *, secure: bool) -> CookieSpec:
    """Binds the CSRF token of the sign-in and invitation forms before there is a session."""
    return CookieSpec(
        name=presession_cookie_name(secure=secure), value=nonce, secure=secure, max_age=3600, same_site="strict"
    )


def is_secure_request(*, scheme: str, peer_is_trusted_proxy: bool, forwarded_proto: str | None) -> bool:
    """Whether the browser reached us over HTTPS: directly, or via a trusted proxy that terminated TLS.

    ``X-Forwarded-Proto`` from anyone but a trusted proxy is ignored, like ``X-Forwarded-For``.
    """
    if scheme in ("https", "wss"):
        return True
    if peer_is_trusted_proxy and forwarded_proto is not None:
        return forwarded_proto.split(",")[-1].strip().lower() == "https"
    return False


def plain_http_allowed(client: IPAddress | None) -> bool:
    """Plain HTTP is accepted only from this machine: anywhere else the session cookie would cross a network."""
    return client is not None and client.is_loopback


def csrf_token(root: bytes, binding: str) -> str:
    """The CSRF token for a session (its token digest) or a pre-session nonce."""
    return crypto.sign(root, _CSRF_PURPOSE, binding.encode())


def csrf_token_valid(root: bytes, binding: str | None, presented: str | None) -> bool:
    """Constant-time check of a presented token against its binding; no binding or no token never passes."""
    if not binding or not presented:
        return False
    return crypto.verify(root, _CSRF_PURPOSE, binding.encode(), presented)


def cross_site_refusal(
    *, method: str, origin: str | None, sec_fetch_site: str | None, expected_origin: str
) -> str | None:
    """Why a request must be refused as cross-site, or None. Safe methods are never refused here.

    ``Sec-Fetch-Site: cross-site`` (and ``same-site``: a sibling subdomain is another party too) and any ``Origin``
    other than our own (including ``null``, sent by sandboxed frames and some redirects) are refused. A request with
    neither header (an old browser, a script) still needs the token.
    """
    if method.upper() in _SAFE_METHODS:
        return None
    if sec_fetch_site is not None and sec_fetch_site.lower() in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {sec_fetch_site}"
    if origin is not None and origin.rstrip("/").lower() != expected_origin.rstrip("/").lower():
        return f"Origin {origin!r} is not {expected_origin!r}"
    return None
