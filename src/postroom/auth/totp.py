"""Time-based one-time passwords (RFC 6238) and recovery codes for dashboard sign-in.

TOTP: SHA-1, 6 digits, 30 s steps, one step of clock drift either way, a 160-bit seed from ``secrets``. A code is
usable once: the caller stores the step of the last accepted code and ``matching_step`` only accepts a strictly
later one (pyotp's ``verify(valid_window=1)`` keeps no such state, so it is not used). Seeds are sealed with the
server secret before they are stored.

Recovery codes: ten codes of 16 base32 characters (80 bits each), shown once, stored as argon2id hashes (ASVS
6.5.2 asks for a password hash below 112 bits), each usable once.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from datetime import datetime

import pyotp
import segno

from postroom.auth.passwords import HASHER

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
ISSUER = "Postroom"
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_secret() -> str:
    """A fresh seed: 160 random bits as base32 (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(step * STEP_SECONDS)


def matching_step(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The step ``code`` belongs to (now ± one step), if that step is later than ``last_step``; else None.

    The caller must store the returned step atomically (only if it is still later than the stored one), so two
    requests racing with the same code cannot both succeed.
    """
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = step_at(now)
    matched = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Compare every candidate, in constant time, so timing does not tell which step matched.
        if hmac.compare_digest(code_at_step(secret, step), code) and matched is None:
            matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no XML declaration, no scripts, no inline styles)."""
    qr = segno.make(uri, error="m")
    return qr.svg_inline(scale=4, dark="#111", light="#fff", title="Scan with your authenticator app")


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """Fresh recovery codes as shown to the user: ``ABCD-EFGH-IJKL-MNOP`` (80 random bits each)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def normalise_recovery_code(text: str) -> str:
    """What was typed, without spaces or dashes, upper-case; the form that is hashed."""
    return "".join(ch for ch in text.upper() if ch not in " -\t")


def looks_like_recovery_code(text: str) -> bool:
    code = normalise_recovery_code(text)
    return len(code) == 16 and all(ch in _RECOVERY_ALPHABET for ch in code)


def hash_recovery_code(code: str) -> str:
    return HASHER.hash(normalise_recovery_code(code))


def recovery_code_matches(stored_hash: str, code: str) -> bool:
    try:
        return bool(HASHER.verify(stored_hash, normalise_recovery_code(code)))
    except Exception:  # argon2's mismatch and malformed-hash errors alike: no match
        return False
