"""The server secret and the sealed boxes built from it.

One secret per installation (``POSTROOM_SECRET_KEY``, or a random key kept in ``<data dir>/secret.key``) is the
root of every key Postroom derives: a separate subkey per purpose (HKDF-SHA256), so a key that seals DKIM private
keys is never the one that signs a session cookie. Boxes are AES-256-GCM with a random nonce and the purpose as
associated data, so a value sealed for one purpose cannot be opened as another.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret
_BOX_PREFIX = "v1:"


class SecretError(ValueError):
    """A sealed value could not be opened: wrong server secret, wrong purpose, or tampered with."""


def load_server_secret(configured: str, data_dir: Path) -> bytes:
    """The installation's root secret: the configured one, else the data directory's key file (created once).

    Several processes on one PostgreSQL database must share it, so they need ``POSTROOM_SECRET_KEY`` (or the
    same key file); a single embedded installation gets a file it never has to think about.
    """
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    path = data_dir / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


@functools.lru_cache(maxsize=64)
def derive_key(root: bytes, purpose: str) -> bytes:
    """A 32-byte subkey of ``root`` for one ``purpose`` (e.g. ``"dkim-private-key"``, ``"session"``); kept, since
    every delivery derives the VERP and DKIM subkeys again."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(root)


class SecretBox:
    """Seals short secrets (private keys, webhook credentials) for storage in the database."""

    def __init__(self, root: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive_key(root, purpose))
        self._purpose = purpose.encode()

    def seal(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._purpose)
        return _BOX_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str) -> str:
        if not token.startswith(_BOX_PREFIX):
            raise SecretError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(token[len(_BOX_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], self._purpose).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretError("the sealed value does not open with this server secret") from exc


def sign(root: bytes, purpose: str, message: bytes) -> str:
    """Hex HMAC-SHA256 of ``message`` under the ``purpose`` subkey (VERP tokens, CSRF tokens)."""
    return hmac.new(derive_key(root, purpose), message, hashlib.sha256).hexdigest()


def verify(root: bytes, purpose: str, message: bytes, signature: str) -> bool:
    """Constant-time check of a :func:`sign` value."""
    return hmac.compare_digest(sign(root, purpose, message), signature)
