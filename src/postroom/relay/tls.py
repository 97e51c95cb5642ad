"""The TLS certificate of the SMTP listeners: the operator's, or a self-signed one for development.

With ``POSTROOM_SMTP_TLS_CERT``/``POSTROOM_SMTP_TLS_KEY`` unset, a self-signed ECDSA P-256 certificate for the mail
hostname (plus ``localhost`` and the loopback addresses) is made once and kept: the certificate alone in
``<data dir>/smtp-tls.pem`` (the file clients are told to trust), its private key in ``<data dir>/smtp-tls.key``,
readable only by its owner. A ``smtp-tls.pem`` from an earlier version that holds the key too is split into the
two files at start. It is for development and tests; a public deployment configures a real certificate.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postroom.config import Settings

SELF_SIGNED_FILE = "smtp-tls.pem"
"""The self-signed certificate, without its key: safe to hand to clients."""
SELF_SIGNED_KEY_FILE = "smtp-tls.key"
_VALIDITY = timedelta(days=825)
_RENEW_BEFORE = timedelta(days=30)
_KEY_BLOCK = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\r?\n?", re.DOTALL)


def _self_signed_pair(hostname: str, now: datetime) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    alternative_names: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys([hostname, "localhost"])]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically (a concurrent process sees the old file or the new one, never half of one)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, mode)  # whatever the umask
    os.replace(temporary, path)


def _split_combined(certificate: Path, key: Path) -> None:
    """Move the private key out of a certificate file that holds both (as earlier versions wrote it)."""
    try:
        combined = certificate.read_bytes()
    except OSError:
        return
    blocks = _KEY_BLOCK.findall(combined)
    if not blocks:
        return
    _write(key, b"".join(blocks), 0o600)
    _write(certificate, _KEY_BLOCK.sub(b"", combined), 0o644)


def _usable(certificate_path: Path, key_path: Path, hostname: str, now: datetime) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if key.public_key() != certificate.public_key():
        return False
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return now + _RENEW_BEFORE < certificate.not_valid_after_utc and hostname in names.get_values_for_type(x509.DNSName)


def self_signed_certificate(data_dir: Path, hostname: str) -> tuple[Path, Path]:
    """The development certificate for ``hostname`` and its key file (made, or renewed when near expiry, on first
    use; a combined file of an earlier version is split first)."""
    certificate, key = data_dir / SELF_SIGNED_FILE, data_dir / SELF_SIGNED_KEY_FILE
    _split_combined(certificate, key)
    now = datetime.now(UTC)
    if _usable(certificate, key, hostname, now):
        return certificate, key
    data_dir.mkdir(parents=True, exist_ok=True)
    certificate_pem, key_pem = _self_signed_pair(hostname, now)
    _write(key, key_pem, 0o600)
    _write(certificate, certificate_pem, 0o644)
    return certificate, key


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of every SMTP listener (TLS 1.2 or newer, no client certificates)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.smtp_tls_cert is not None and settings.smtp_tls_key is not None:
        context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    else:
        certificate, key = self_signed_certificate(settings.data_dir, settings.mail_hostname)
        context.load_cert_chain(certificate, key)
    return context
