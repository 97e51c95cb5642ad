"""The API key format: ``lttr_`` (live) or ``lttr_sandbox_`` (sandbox) + 64 base62 characters, the last 6 a CRC32
checksum of everything before them.

58 random base62 characters from ``secrets`` carry about 345 bits. The checksum lets secret scanners (and our
guard) tell a real key from a random string offline: a malformed key is refused without touching the database.
Keys are stored only as SHA-256 digests; a fast hash is right for a secret this long (ASVS 5.0 §6.5.2).

Published pattern for scanners: ``\\blttr_(?:sandbox_)?[0-9A-Za-z]{64}\\b``. A sandbox key's mail is captured in
the local inbox instead of being delivered; the prefix says so to anyone who reads the key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

PREFIX = "lttr_"
SANDBOX_PREFIX = "lttr_sandbox_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 58
CHECKSUM_LENGTH = 6
KEY_PATTERN = re.compile(r"lttr_(?:sandbox_)?[0-9A-Za-z]{64}")
DISPLAY_PREFIX_LENGTH = 12
"""Characters of the random part shown after the key's prefix (``lttr_`` + 7, or ``lttr_sandbox_`` + 7)."""
_DISPLAY_RANDOM = DISPLAY_PREFIX_LENGTH - len(PREFIX)


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    chars = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def generate_key(*, sandbox: bool = False) -> str:
    """A new key; it exists in clear only until it has been shown to its owner once."""
    body = (SANDBOX_PREFIX if sandbox else PREFIX) + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return body + _checksum(body)


def is_well_formed(token: str) -> bool:
    """Whether ``token`` has the key format and a correct checksum."""
    if KEY_PATTERN.fullmatch(token) is None:
        return False
    return token[-CHECKSUM_LENGTH:] == _checksum(token[:-CHECKSUM_LENGTH])


def is_sandbox(token: str) -> bool:
    """Whether ``token`` is written as a sandbox key (the stored key row is what the guard trusts)."""
    return token.startswith(SANDBOX_PREFIX)


def key_digest(token: str) -> bytes:
    """What is stored and looked up: SHA-256 of the whole key."""
    return hashlib.sha256(token.encode("ascii")).digest()


def display_prefix(token: str) -> str:
    """What the dashboard and logs may show: the prefix and 7 random characters (``lttr_AbC1234``,
    ``lttr_sandbox_AbC1234``)."""
    prefix = SANDBOX_PREFIX if is_sandbox(token) else PREFIX
    return token[: len(prefix) + _DISPLAY_RANDOM]


def loggable_prefix(token: str) -> str | None:
    """A prefix of a presented credential that is safe to record: only for well-formed keys, never the rest."""
    return display_prefix(token) if is_well_formed(token) else None
