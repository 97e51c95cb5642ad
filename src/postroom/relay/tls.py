"""The TLS certificate of the SMTP listeners: the operator's, or a self-signed one for development.

With ``POSTROOM_SMTP_TLS_CERT``/``POSTROOM_SMTP_TLS_KEY`` unset, a self-signed ECDSA P-256 certificate for the mail
hostname (plus ``localhost`` and the loopback addresses) is made once and kept, key and certificate in one file
readable only by its owner, in ``<data dir>/smtp-tls.pem``. Clients must be told to trust it, so it is for
development and tests; a public deployment configures a real certificate.
"""

from __future__ import annotations

import ipaddress
import os
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
_VALIDITY = timedelta(days=825)
_RENEW_BEFORE = timedelta(days=30)


def _self_signed_pem(hostname: str, now: datetime) -> bytes:
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
    return key_pem + certificate.public_bytes(serialization.Encoding.PEM)


def _usable(path: Path, hostname: str, now: datetime) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return now + _RENEW_BEFORE < certificate.not_valid_after_utc and hostname in names.get_values_for_type(x509.DNSName)


def self_signed_certificate(data_dir: Path, hostname: str) -> Path:
    """The development certificate for ``hostname`` (made, or renewed when near expiry, on first use)."""
    path = data_dir / SELF_SIGNED_FILE
    now = datetime.now(UTC)
    if _usable(path, hostname, now):
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SELF_SIGNED_FILE}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(_self_signed_pem(hostname, now))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)  # atomic: a concurrent process sees the old file or the new one, never half
    return path


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of every SMTP listener (TLS 1.2 or newer, no client certificates)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.smtp_tls_cert is not None and settings.smtp_tls_key is not None:
        context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    else:
        context.load_cert_chain(self_signed_certificate(settings.data_dir, settings.mail_hostname))
    return context
