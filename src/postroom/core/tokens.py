"""Signed, expiring tokens for links in emails (``<payload>.<expiry>.<mac>``, URL-safe).

The MAC is HMAC-SHA256 over payload and expiry under a key derived from the server secret for the token's purpose
alone, so a token made for one purpose never verifies as another; it is checked in constant time. The payload is
readable by whoever holds the token and must not be a secret.
"""

from __future__ import annotations

import base64
import binascii

from postroom.core.crypto import sign, verify

MAX_TOKEN = 4096


def make(root: bytes, purpose: str, payload: str, *, expires_at: int) -> str:
    """A token for ``payload`` that verifies under ``purpose`` until ``expires_at`` (unix seconds)."""
    body = f"{base64.urlsafe_b64encode(payload.encode()).decode().rstrip('=')}.{expires_at:x}"
    return f"{body}.{sign(root, f'token:{purpose}', body.encode())}"


def read(root: bytes, purpose: str, token: str, *, now: float) -> str | None:
    """The payload of a valid, unexpired token of ``purpose``; None for a forged, altered, expired or malformed one."""
    if len(token) > MAX_TOKEN or token.count(".") != 2:
        return None
    encoded, expiry, mac = token.split(".")
    if not verify(root, f"token:{purpose}", f"{encoded}.{expiry}".encode(), mac):
        return None
    try:
        if int(expiry, 16) <= now:
            return None
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
