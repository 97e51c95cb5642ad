"""Random, prefixed identifiers for objects that are addressed by id (never sequential, so not guessable)."""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits, Crockford base32, after ``prefix_``.

    Sorting ids sorts them by creation time, which keeps list output stable.
    """
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars)).lower()}"


MAX_ROW_ID = 2**31 - 1
"""The largest integer id a request may name: integer ids are 32-bit columns on PostgreSQL, so a larger value is
refused as invalid input (422) instead of reaching the database."""
