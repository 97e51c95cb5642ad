"""Dashboard passwords: argon2id hashing and the rules a new password must meet.

Parameters are OWASP ASVS 5.0's minimum for argon2id (t=2, m=19 MiB, p=1; about 28 ms per verify on a 2-core
machine), the cost that still lets a small server answer sign-ins promptly. They travel inside each PHC string, so
raising them later only needs ``needs_rehash`` on the next successful sign-in.

The rules follow ASVS 6.2: at least 8 characters (15 recommended), at most 1024, no composition rules, no case
folding or truncation, and not one of the passwords attackers try first. Verification runs in a worker thread
(``verify_password_async``): 28 ms of CPU must not stall the event loop or the database writer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 1024

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)

# The passwords credential-stuffing lists start with (the head of public top-password lists). ASVS asks for the
# top 3,000; this is the head of that list, kept short so the package carries no word list.
_COMMON = frozenset(
    """
    password password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword 12345678 123456789
    1234567890 12345678910 11111111 00000000 87654321 88888888 qwertyui qwerty123 qwerty1234 qwertyuiop
    1q2w3e4r 1q2w3e4r5t 1qaz2wsx zaq12wsx abc12345 abcd1234 iloveyou sunshine princess football baseball
    superman starwars trustno1 letmein1 welcome1 welcome123 admin123 administrator changeme changeme123
    monkey123 dragon123 master123 michael1 jennifer computer internet whatever asdfghjk asdfasdf
    aa123456 a1234567 qazwsxedc 123qweasd 123123123 987654321 12341234 123456789a postroom postroom1
    """.split()
)


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool
    needs_rehash: bool = False


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """Why ``password`` may not be chosen (empty when it may)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"The password must be at least {MIN_LENGTH} characters (15 or more is better).")
    if len(password) > MAX_LENGTH:
        problems.append(f"The password must not be longer than {MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in _COMMON:
        problems.append("This password is one of the most common passwords; choose another.")
    if email and lowered in {email.lower(), email.split("@", 1)[0].lower()}:
        problems.append("The password must not be your email address.")
    return problems


def hash_password(password: str) -> str:
    """An argon2id PHC string for ``password`` (salted; about 28 ms)."""
    return HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> Verified:
    """Whether ``password`` matches ``stored_hash``; a malformed hash never matches."""
    try:
        HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return Verified(ok=False)
    return Verified(ok=True, needs_rehash=HASHER.check_needs_rehash(stored_hash))


DUMMY_HASH = HASHER.hash("postroom: a password nobody has")
"""Verified against when the account does not exist, so an unknown address costs the same time as a wrong password."""


async def verify_password_async(stored_hash: str | None, password: str) -> Verified:
    """``verify_password`` off the event loop; ``None`` (no such account) burns the same time and fails."""
    if stored_hash is None:
        await asyncio.to_thread(verify_password, DUMMY_HASH, password)
        return Verified(ok=False)
    return await asyncio.to_thread(verify_password, stored_hash, password)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)
