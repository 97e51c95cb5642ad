"""Signed public tokens: a purpose, a payload and an optional expiry, compact and URL-safe.

A token is ``<body>.<mac>``, both unpadded URL-safe base64: ``body`` is ``<expiry>~<payload>`` (the expiry in
unix seconds as hex, empty for none) and ``mac`` the first 16 bytes of HMAC-SHA256 over the body, under a key
derived from the server secret for the purpose alone (``token:<purpose>``). A token made for one purpose (an open)
never verifies as another (a click, an unsubscribe), an altered byte anywhere fails the check, and the check
compares in constant time. The payload is readable by whoever holds the token: it must not be a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from postroom.core.crypto import derive_key

_MAC_BYTES = 16
MAX_TOKEN = 8192
"""Longer strings are refused before any decoding."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(root: bytes, purpose: str, body: bytes) -> bytes:
    return hmac.new(derive_key(root, f"token:{purpose}"), body, hashlib.sha256).digest()[:_MAC_BYTES]


def make(root: bytes, purpose: str, payload: str, *, expires_at: int | None = None) -> str:
    """A token for ``payload`` under ``purpose``; with ``expires_at`` (unix seconds) it verifies until then."""
    body = f"{'' if expires_at is None else format(expires_at, 'x')}~{payload}".encode()
    return f"{_b64(body)}.{_b64(_mac(root, purpose, body))}"


def read(root: bytes, purpose: str, token: str, *, now: float | None = None) -> str | None:
    """The payload of a valid, unexpired ``purpose`` token; None for anything else (forged, altered, expired,
    made for another purpose, malformed)."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        return None
    body_text, mac_text = token.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        return None
    if _b64(body) != body_text or _b64(mac) != mac_text:  # one spelling per token: no ignored bits or characters
        return None
    if not hmac.compare_digest(_mac(root, purpose, body), mac):
        return None
    expiry, sep, payload = body.partition(b"~")
    if not sep:
        return None
    if expiry:
        try:
            if int(expiry, 16) <= (time.time() if now is None else now):
                return None
        except ValueError:
            return None
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None
