"""DKIM signing (RFC 6376): rsa-sha256 with relaxed/relaxed canonicalisation.

The RSA operation goes through ``cryptography`` (OpenSSL): dkimpy signs with pure-Python big-integer arithmetic,
about 25 times slower, which matters when every outgoing message is signed. Canonicalisation is done here too
(it is a few regular expressions), so this module needs nothing but ``cryptography``; the tests check every
signature with dkimpy's verifier.

Messages are expected with CRLF line endings, as ``EmailMessage.as_bytes(policy=email.policy.SMTP)`` produces.
Bare LF or CR is normalised to CRLF before hashing, because that is what an SMTP client puts on the wire (and
so what the receiver verifies).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)

# RFC 8301: verifiers must not accept keys under 1024 bits; 2048 is what receivers expect today.
MIN_KEY_BITS = 1024

_HEADER_NAME = b"DKIM-Signature"
_MAX_LINE = 78  # RFC 5322 §2.1.1 "SHOULD" limit, without the CRLF
_B64_LINE = 76  # signature chunk per continuation line (plus the leading space)

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # printable US-ASCII except ':' (RFC 5322 §3.6.8)
_DOMAIN = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*"
)  # noqa: E501


@dataclass(frozen=True)
class DkimKey:
    """A signing domain's key: ``d=`` domain, ``s=`` selector and the PKCS#8 (or PKCS#1) PEM private key.

    Domain and selector must be ASCII (A-labels for internationalised domains): they go into a header verbatim.
    """

    domain: str
    selector: str
    private_key_pem: bytes

    def __post_init__(self) -> None:
        for what, value in (("domain", self.domain), ("selector", self.selector)):
            if not _DOMAIN.fullmatch(value):
                raise ValueError(f"DKIM {what} {value!r} is not an ASCII domain name")

    def private_key(self) -> rsa.RSAPrivateKey:
        """The parsed key; parsing happens once per distinct PEM, not once per message."""
        return load_private_key(self.private_key_pem)


@functools.lru_cache(maxsize=256)
def load_private_key(private_key_pem: bytes) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PEM RSA key, cached: PEM parsing costs more than the signature itself."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the DKIM key is not an RSA private key")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"the DKIM key has {key.key_size} bits; receivers reject keys under {MIN_KEY_BITS}")
    return key


def generate_rsa_key(bits: int = 2048) -> tuple[bytes, str]:
    """A new private key (unencrypted PKCS#8 PEM) and the TXT record value that publishes its public half.

    The TXT value is longer than 255 bytes for 2048-bit keys; whoever publishes it must split it into several
    character-strings of one record (most DNS providers do this themselves).
    """
    if bits < MIN_KEY_BITS:
        raise ValueError(f"DKIM keys need at least {MIN_KEY_BITS} bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"


def sign(
    message: bytes,
    key: DkimKey,
    *,
    timestamp: int | None = None,
    signed_headers: Sequence[bytes] = DEFAULT_SIGNED_HEADERS,
) -> bytes:
    """The complete ``DKIM-Signature: …`` header field, folded and ending in CRLF, to prepend to ``message``.

    Of ``signed_headers`` only those present are signed (all instances, bottom-up, RFC 6376 §5.4.2), because
    listing an absent field would make a later, legitimate addition break the signature. ``From`` is mandatory.
    """
    names = _normalise_names(signed_headers)
    fields, body = _split(_crlf(message))

    by_name: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        by_name.setdefault(name.rstrip(b" \t").lower(), []).append(_relaxed_header(name, value))
    if b"from" not in by_name:
        raise ValueError("the message has no From header, which a DKIM signature must cover")

    h_names: list[bytes] = []
    signed: list[bytes] = []
    for name in names:
        instances = by_name.get(name, [])
        h_names.extend([name] * len(instances))
        signed.extend(reversed(instances))

    body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
    tags = [
        b"v=1;",
        b"a=rsa-sha256;",
        b"c=relaxed/relaxed;",
        b"d=" + key.domain.encode("ascii") + b";",
        b"s=" + key.selector.encode("ascii") + b";",
        b"t=" + str(int(time.time()) if timestamp is None else timestamp).encode("ascii") + b";",
    ]
    lines = _fold(tags, h_names, b"bh=" + body_hash + b";")

    # The signature covers this very header with an empty b= (RFC 6376 §3.7), canonicalised and without CRLF.
    unsigned = b"\r\n".join(lines)
    own = _relaxed_header(_HEADER_NAME, unsigned[len(_HEADER_NAME) + 1 :])[:-2]
    data = b"".join(signed) + own
    signature = base64.b64encode(key.private_key().sign(data, padding.PKCS1v15(), hashes.SHA256()))

    # b= is excluded from the hash, so it can be folded freely; keep it off the tag lines for readability.
    chunks = [b" " + signature[i : i + _B64_LINE] for i in range(0, len(signature), _B64_LINE)]
    return b"\r\n".join([*lines, *chunks]) + b"\r\n"


def _normalise_names(signed_headers: Sequence[bytes]) -> list[bytes]:
    """Lower-case, de-duplicated field names in the caller's order; ``from`` must be among them."""
    names: list[bytes] = []
    for raw in signed_headers:
        name = raw.strip().lower()
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"{raw!r} is not a header field name")
        if name not in names:
            names.append(name)
    if b"from" not in names:
        raise ValueError("signed_headers must include b'from' (RFC 6376 §5.4)")
    return names


def _crlf(message: bytes) -> bytes:
    """``message`` with every line ending as CRLF; counting first avoids a copy for the usual, clean case."""
    crlf = message.count(b"\r\n")
    if message.count(b"\r") == crlf and message.count(b"\n") == crlf:
        return message
    return _LINE_ENDING.sub(b"\r\n", message)


def _split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields as (name, raw value with folding) pairs, and the body after the empty line."""
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    header_block, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 4 :])
    fields: list[tuple[bytes, bytes]] = []
    for line in header_block.split(b"\r\n"):
        if not line:
            continue
        if line[0] in b" \t":
            if not fields:
                raise ValueError("the message starts with a folded continuation line")
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name.rstrip(b" \t")):
            raise ValueError(f"malformed header line {line[:60]!r}")
        fields.append((name, value))
    return fields, body


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: lower-case name, unfold, squeeze whitespace, trim around the colon; ends in CRLF."""
    unfolded = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")
    return name.rstrip(b" \t").lower() + b":" + unfolded + b"\r\n"


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: no trailing whitespace on lines, squeezed whitespace, no empty lines at the end.

    A last line without CRLF gets one first, as the SMTP client will add it before the final dot.
    """
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    body = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
    stripped = body.rstrip(b"\r\n")  # line endings are CRLF pairs here, so this removes whole empty lines
    return stripped + b"\r\n" if stripped else b""


def _fold(tags: list[bytes], h_names: list[bytes], body_hash_tag: bytes) -> list[bytes]:
    """The header's lines up to ``b=``: tags packed into lines of at most 78 characters where possible.

    ``h=`` may itself be split before a colon (FWS is allowed there); nothing else is split, so a tag longer
    than a line (a very long ``d=``) simply gets a line of its own.
    """
    h_atoms = [b"h=" + h_names[0]] + [b":" + name for name in h_names[1:]]
    h_atoms[-1] += b";"
    atoms = [(tag, False) for tag in tags] + [(atom, i > 0) for i, atom in enumerate(h_atoms)]
    atoms += [(body_hash_tag, False), (b"b=", False)]

    lines: list[bytes] = []
    current = _HEADER_NAME + b":"
    for atom, glued in atoms:
        separator = b"" if glued else b" "
        if len(current) + len(separator) + len(atom) <= _MAX_LINE:
            current += separator + atom
        else:
            lines.append(current)
            current = b" " + atom
    lines.append(current)
    return lines
