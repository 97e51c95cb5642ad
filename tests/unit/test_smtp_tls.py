"""The self-signed SMTP certificate: the certificate file holds no key, the key file is the owner's alone, and a
combined file of an earlier version is split. Checked with real TLS handshakes over loopback."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

from cryptography import x509

from postroom.config import load_settings
from postroom.relay.tls import SELF_SIGNED_FILE, SELF_SIGNED_KEY_FILE, self_signed_certificate, server_context


def _handshake(server: ssl.SSLContext, trusted: Path) -> str:
    """Connect a client that trusts only ``trusted`` to a loopback TLS server; the certificate's common name."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            connection, _ = listener.accept()
            with server.wrap_socket(connection, server_side=True) as wrapped:
                wrapped.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context(cafile=str(trusted))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        peer = tls.getpeercert()
        tls.sendall(b"x")
    thread.join(timeout=10)
    listener.close()
    assert not errors, errors
    assert peer is not None
    subject: Any = peer["subject"]
    return str(dict(item[0] for item in subject)["commonName"])


def test_the_certificate_file_holds_no_key_and_the_key_file_is_private(tmp_path: Path) -> None:
    settings = load_settings({"POSTROOM_DATA_DIR": str(tmp_path), "POSTROOM_MAIL_HOSTNAME": "mail.postroom.test"})
    context = server_context(settings)
    certificate, key = tmp_path / SELF_SIGNED_FILE, tmp_path / SELF_SIGNED_KEY_FILE
    assert b"PRIVATE KEY" not in certificate.read_bytes()
    x509.load_pem_x509_certificate(certificate.read_bytes())
    assert b"PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _handshake(context, certificate) == "mail.postroom.test"
    assert self_signed_certificate(tmp_path, "mail.postroom.test") == (certificate, key)
    assert b"PRIVATE KEY" not in certificate.read_bytes()  # kept, not remade or recombined


def test_a_combined_file_of_an_earlier_version_is_split_on_start(tmp_path: Path) -> None:
    first, key_path = self_signed_certificate(tmp_path, "mail.postroom.test")
    original_certificate = first.read_bytes()
    combined = key_path.read_bytes() + original_certificate  # how earlier versions wrote smtp-tls.pem
    key_path.unlink()
    first.write_bytes(combined)

    settings = load_settings({"POSTROOM_DATA_DIR": str(tmp_path), "POSTROOM_MAIL_HOSTNAME": "mail.postroom.test"})
    context = server_context(settings)
    assert first.read_bytes() == original_certificate  # the same certificate clients already trust, key removed
    assert b"PRIVATE KEY" in key_path.read_bytes() and stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert _handshake(context, first) == "mail.postroom.test"
