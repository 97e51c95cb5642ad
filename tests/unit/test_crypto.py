"""The server secret and sealed boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.config import ConfigError, load_settings
from postroom.core.crypto import SecretBox, SecretError, load_server_secret, sign, verify


def test_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_server_secret("", tmp_path)
    assert len(first) == 32
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_server_secret("", tmp_path) == first


def test_configured_secret_wins_over_the_file(tmp_path: Path) -> None:
    load_server_secret("", tmp_path)
    assert load_server_secret("x" * 40, tmp_path) == load_server_secret("x" * 40, tmp_path / "elsewhere")
    assert load_server_secret("x" * 40, tmp_path) != load_server_secret("", tmp_path)


def test_a_short_configured_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="POSTROOM_SECRET_KEY"):
        load_settings({"POSTROOM_SECRET_KEY": "short"})


def test_sealed_value_opens_only_with_the_same_secret_and_purpose() -> None:
    root = b"r" * 32
    token = SecretBox(root, "dkim").seal("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE" not in token
    assert SecretBox(root, "dkim").open(token) == "-----BEGIN PRIVATE KEY-----"
    with pytest.raises(SecretError):
        SecretBox(root, "webhook").open(token)
    with pytest.raises(SecretError):
        SecretBox(b"o" * 32, "dkim").open(token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(SecretError):
        SecretBox(root, "dkim").open(tampered)


def test_two_seals_of_one_value_differ() -> None:
    box = SecretBox(b"r" * 32, "dkim")
    assert box.seal("same") != box.seal("same")


def test_signatures_verify_per_purpose() -> None:
    signature = sign(b"r" * 32, "verp", b"42")
    assert verify(b"r" * 32, "verp", b"42", signature)
    assert not verify(b"r" * 32, "verp", b"43", signature)
    assert not verify(b"r" * 32, "csrf", b"42", signature)
