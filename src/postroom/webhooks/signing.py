"""``Lettr-Signature``: how Postroom signs what it sends, and how a receiver checks it.

The scheme is Stripe's, as the Lettr docs describe it: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``, where the
HMAC key is the endpoint's whole secret string (``whsec_…``, UTF-8) and the signed message is ``"<t>."`` followed
by the raw request body, byte for byte. During a secret rotation the header carries one ``v1`` per active secret,
so a receiver holding either secret accepts the delivery. The timestamp bounds replays: receivers refuse a
signature more than ``tolerance`` seconds away from their clock, in either direction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "Lettr-Signature"
DEFAULT_TOLERANCE = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix every secret starts with
SECRET_BYTES = 32


def new_secret() -> str:
    """``whsec_`` and the base64 of 32 random bytes (256 bits), as Standard Webhooks shapes its secrets."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(signing_secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """``t=…,v1=…[,v1=…]``: one ``v1`` per active secret, newest first."""
    parts = [f"t={timestamp}"]
    parts.extend(f"v1={signature(secret, timestamp, body)}" for secret in signing_secrets)
    return ",".join(parts)


def _parse(header: str) -> tuple[int, list[str]] | None:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isascii() or not value.isdigit() or timestamp is not None:
                return None
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip())
        # Other schemes (v0, future ones) are ignored, never trusted: no downgrade through an unknown scheme.
    if timestamp is None or not candidates:
        return None
    return timestamp, candidates


def verify(
    body: bytes | str,
    header: str | None,
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the ``Lettr-Signature`` value) signs ``body`` with ``secret`` within ``tolerance`` s.

    ``body`` must be the raw request body as received: re-serialised JSON will not verify. ``now`` (unix seconds)
    defaults to the current time. Every candidate signature is compared in constant time.

    ::

        from postroom.webhooks import verify

        if not verify(request.body, request.headers.get("Lettr-Signature"), WEBHOOK_SECRET):
            return Response(status=400)
    """
    if not header or not secret:
        return False
    parsed = _parse(header)
    if parsed is None:
        return False
    timestamp, candidates = parsed
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else bytes(body)
    expected = signature(secret, timestamp, raw)
    matched = False
    for candidate in candidates:
        # No early exit: the time taken does not tell which candidate (if any) matched.
        matched |= hmac.compare_digest(expected, candidate)
    return matched
