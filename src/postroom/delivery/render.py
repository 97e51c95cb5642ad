"""Turning a stored send into the RFC 5322 message that goes on the wire.

Every header value was checked for line breaks and control characters when the send was accepted
(``postroom.core.headers``), and custom headers for RFC 5322's line limit. The Message-ID and Date come from the
stored message, so a retry (or a duplicate after a crash) carries the same Message-ID.

The message is written out directly rather than through ``email``'s message classes and generator, which
re-parse and re-fold every header (over 200 µs a message, as much as the DKIM signature). The shape is the one
they produce: text parts in UTF-8, ``7bit`` when ASCII with lines of at most 78 characters and
quoted-printable otherwise (as mail clients and spam filters expect of text; attachments are base64),
``multipart/alternative`` for several parts, inside ``multipart/mixed`` when there are attachments; non-ASCII
header values as RFC 2047 encoded words, attachment names in RFC 2231 form; CRLF line endings, headers folded at
whitespace to 78 characters where they allow it and never over 998, and no other line over 78. A send without
``to`` (Bcc-only mail submitted over SMTP) says ``To: undisclosed-recipients:;``.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import quopri
import secrets
from datetime import datetime
from email.utils import encode_rfc2231, format_datetime, formataddr

import css_inline

from postroom.core.headers import FOLD_WIDTH, fold
from postroom.messages.request import SendRequest

log = logging.getLogger("postroom.delivery")

CRLF = "\r\n"
_WORD_BYTES = 39  # UTF-8 bytes per encoded word: 52 base64 characters, 64 with the =?utf-8?b?…?= around them
_ADDRESSES_PER_LINE = 2
_SECTION = 60  # characters of an attachment name per RFC 2231 section


_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False)
"""Stylesheets the HTML links to are never fetched: only its own ``<style>`` blocks are inlined."""


def inline_styles(request: SendRequest) -> SendRequest:
    """With ``options.inline_css``, the HTML with its ``<style>`` rules moved into ``style`` attributes (css-inline),
    which mail clients that strip ``<style>`` still apply. HTML the inliner cannot process is sent as written."""
    if request.html is None or not request.options.get("inline_css"):
        return request
    try:
        return dataclasses.replace(request, html=_INLINER.inline(request.html))
    except (css_inline.InlineError, ValueError) as error:
        log.warning("inline_css: the HTML was sent without inlining: %s", error)
        return request


def _encoded_words(value: str) -> str:
    """``value`` as RFC 2047 base64 encoded words, folded one word per line, never splitting a character."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in value:
        n = len(char.encode("utf-8"))
        if size + n > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    words.append("".join(chunk))
    return (CRLF + " ").join(f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words)


def _header(name: str, value: str) -> str:
    """``Name: value`` folded; a non-ASCII value, or an ASCII one too long to fold (only the subject can be: custom
    headers that cannot were refused when accepted), as encoded words."""
    folded = fold(name, value) if value.isascii() else None
    return folded if folded is not None else f"{name}: {_encoded_words(value)}"


def _address(address: str, name: str | None) -> str:
    # formataddr quotes an ASCII name when it must and turns a non-ASCII one into an encoded word.
    return formataddr((name, address)) if name else address


def _address_list(addresses: tuple[str, ...]) -> str:
    lines = [", ".join(addresses[i : i + _ADDRESSES_PER_LINE]) for i in range(0, len(addresses), _ADDRESSES_PER_LINE)]
    return ("," + CRLF + " ").join(lines)


def _base64_body(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").replace("\n", CRLF)


def _filename(name: str) -> str:
    """The ``filename`` parameter in RFC 2231 form, split into numbered sections when it is long (a 255-character
    name can take over 2,000 characters once percent-encoded)."""
    value = encode_rfc2231(name, "utf-8")
    if len(value) <= _SECTION:
        return f"filename*={value}"
    sections, start = [], 0
    while start < len(value):
        end = min(start + _SECTION, len(value))
        if end < len(value):
            end -= 2 if value[end - 2] == "%" else 1 if value[end - 1] == "%" else 0  # never split a %XX
        sections.append(value[start:end])
        start = end
    return (";" + CRLF + " ").join(f"filename*{i}*={section}" for i, section in enumerate(sections))


def _boundary() -> str:
    # Random and long enough that no base64 body can contain it.
    return f"=_postroom_{secrets.token_hex(16)}"


def _text_part(content: str, subtype: str) -> str:
    """A text part with CRLF line endings (the canonical form of text), 7bit when it is ASCII in lines of at most
    78 characters, quoted-printable (lines of at most 76) otherwise."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if content.isascii() and all(len(line) <= FOLD_WIDTH for line in lines):
        encoding, body = "7bit", CRLF.join(lines)
    else:
        encoded = quopri.encodestring("\n".join(lines).encode("utf-8")).decode("ascii")
        encoding, body = "quoted-printable", encoded.replace("\n", CRLF)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: {encoding}{CRLF}{CRLF}' + body
    )


def _multipart(subtype: str, parts: list[str]) -> str:
    boundary = _boundary()
    body = "".join(f"--{boundary}{CRLF}{part}{CRLF}" for part in parts)
    return f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"{CRLF}{CRLF}{body}--{boundary}--{CRLF}'


def _body(request: SendRequest) -> str:
    parts = [
        _text_part(content, subtype)
        for content, subtype in ((request.text, "plain"), (request.amp_html, "x-amp-html"), (request.html, "html"))
        if content is not None
    ]
    body = parts[0] if len(parts) == 1 else _multipart("alternative", parts)
    if not request.attachments:
        return body
    attachments = [
        f"{_header('Content-Type', attachment.type)}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}"
        f"Content-Disposition: attachment;{CRLF} {_filename(attachment.name)}{CRLF}{CRLF}"
        + _base64_body(attachment.decoded())
        for attachment in request.attachments
    ]
    return _multipart("mixed", [body, *attachments])


def render(request: SendRequest, *, message_id_header: str, created_at: datetime) -> bytes:
    """The message with CRLF line endings, ready to be DKIM-signed and sent. Bcc recipients are not listed."""
    to = _address_list(request.to) if request.to else "undisclosed-recipients:;"
    headers = [f"From: {_address(request.from_email, request.from_name)}", f"To: {to}"]
    if request.cc:
        headers.append(f"Cc: {_address_list(request.cc)}")
    if request.reply_to:
        headers.append(f"Reply-To: {_address(request.reply_to, request.reply_to_name)}")
    headers += [
        _header("Subject", request.subject or ""),
        f"Date: {format_datetime(created_at)}",
        f"Message-ID: {message_id_header}",
        "MIME-Version: 1.0",
    ]
    headers += [_header(name, value) for name, value in request.headers.items()]
    return (CRLF.join(headers) + CRLF + _body(request)).encode("utf-8")
