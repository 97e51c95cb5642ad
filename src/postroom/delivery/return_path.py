"""VERP envelope senders: every delivered recipient gets its own return path, so a bounce names who bounced.

Outgoing mail uses ``MAIL FROM:<bounces+<recipient id>-<token>@<bounce host>>``. A bounce or complaint sent back
to that address identifies the recipient without trusting anything in the returned message, which varies wildly
between mail servers. The token is an HMAC of the recipient id under the server secret (purpose ``verp``),
truncated to 16 hex characters (64 bits): without the secret nobody can address a report at a recipient they
did not receive mail for, and the local part stays far below RFC 5321's 64-character limit.
"""

from __future__ import annotations

import hmac
import re

from postroom.config import Settings
from postroom.core.crypto import sign

VERP_PREFIX = "bounces"
TOKEN_LENGTH = 16
_VERP_LOCAL = re.compile(rf"{VERP_PREFIX}\+([0-9]{{1,19}})-([0-9a-f]{{{TOKEN_LENGTH}}})", re.IGNORECASE)


def _token(settings: Settings, recipient_id: int) -> str:
    return sign(settings.server_secret, "verp", str(recipient_id).encode())[:TOKEN_LENGTH]


def envelope_sender(settings: Settings, recipient_id: int) -> str:
    """The return path for one recipient row: ``bounces+<recipient_id>-<token>@<bounce host>``."""
    return f"{VERP_PREFIX}+{recipient_id}-{_token(settings, recipient_id)}@{settings.bounce_host}"


def parse_envelope_recipient(settings: Settings, address: str) -> int | None:
    """The recipient id a VERP address at the bounce host stands for, or None if it is not one of ours.

    The token is compared in constant time. Everything is compared case-insensitively, since some
    mail servers change the case of the addresses they reply to.
    """
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or domain.rstrip(".").lower() != settings.bounce_host.lower():
        return None
    match = _VERP_LOCAL.fullmatch(local)
    if match is None:
        return None
    recipient_id = int(match.group(1))
    if not hmac.compare_digest(_token(settings, recipient_id), match.group(2).lower()):
        return None
    return recipient_id
