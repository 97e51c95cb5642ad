"""Instrumenting a recipient's HTML for open and click tracking, at render time.

- **Clicks** (``options.click_tracking``): every ``href`` of an ``<a>`` or ``<area>`` tag whose value is an
  ``http://`` or ``https://`` URL becomes ``<base>/t/c/<token>``, the token carrying the recipient and the
  original URL, signed. ``mailto:``, ``tel:``, anchors (``#top``), relative links and merge-tag leftovers are left
  alone, and so are links marked ``data-unsubscribe`` or ``data-notrack`` and links that already point at the
  tracking base (our own unsubscribe and preference pages).
- **Opens** (``options.open_tracking``): a 1×1 image ``<base>/t/o/<token>`` before the last ``</body>``, or at
  the end when the HTML has none.

Text and AMP parts are never changed. The HTML is edited in place with a tag-level pattern (no re-serialisation),
so everything else of the message stays byte for byte what the sender wrote.
"""

from __future__ import annotations

import dataclasses
import html
import re

from postroom.messages.request import SendRequest
from postroom.tracking import tokens

OPEN_PURPOSE = "open"
CLICK_PURPOSE = "click"

_ANCHOR = re.compile(r"<(?:a|area)\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_SKIP = re.compile(r"\bdata-(?:unsubscribe|notrack)\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def tracks(request: SendRequest) -> bool:
    """Whether the send asks for open or click tracking and has HTML to carry it."""
    return request.html is not None and bool(
        request.options.get("open_tracking") or request.options.get("click_tracking")
    )


def open_url(base: str, secret: bytes, recipient_id: int) -> str:
    return f"{base}/t/o/{tokens.make(secret, OPEN_PURPOSE, str(recipient_id))}"


def click_url(base: str, secret: bytes, recipient_id: int, target: str) -> str:
    return f"{base}/t/c/{tokens.make(secret, CLICK_PURPOSE, f'{recipient_id}|{target}')}"


def read_open(secret: bytes, token: str) -> int | None:
    """The recipient id of a valid open token."""
    payload = tokens.read(secret, OPEN_PURPOSE, token)
    return int(payload) if payload is not None and payload.isdigit() else None


def read_click(secret: bytes, token: str) -> tuple[int, str] | None:
    """(recipient id, original URL) of a valid click token."""
    payload = tokens.read(secret, CLICK_PURPOSE, token)
    if payload is None:
        return None
    recipient, sep, target = payload.partition("|")
    if not sep or not recipient.isdigit() or not _trackable(target):
        return None
    return int(recipient), target


def _trackable(url: str) -> bool:
    lowered = url.lower()
    return lowered.startswith(("http://", "https://")) and "{{" not in url and not any(c.isspace() for c in url)


def rewrite_links(body: str, *, base: str, secret: bytes, recipient_id: int) -> str:
    """``body`` with each trackable link pointing at its click URL."""

    def tag(match: re.Match[str]) -> str:
        text = match.group(0)
        if _SKIP.search(text):
            return text

        def href(found: re.Match[str]) -> str:
            raw = next(g for g in found.groups()[1:] if g is not None)
            target = html.unescape(raw).strip()
            if not _trackable(target) or target.startswith(base + "/"):
                return found.group(0)
            return f'{found.group(1)}"{click_url(base, secret, recipient_id, target)}"'

        return _HREF.sub(href, text, count=1)

    return _ANCHOR.sub(tag, body)


def add_pixel(body: str, *, base: str, secret: bytes, recipient_id: int) -> str:
    """``body`` with the open pixel before its last ``</body>`` (or at its end)."""
    pixel = (
        f'<img src="{open_url(base, secret, recipient_id)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )
    ends = list(_BODY_END.finditer(body))
    if not ends:
        return body + pixel
    at = ends[-1].start()
    return body[:at] + pixel + body[at:]


def instrument(request: SendRequest, *, base: str, secret: bytes, recipient_id: int) -> SendRequest:
    """The send as one recipient gets it, with the tracking its options ask for (unchanged without HTML)."""
    if request.html is None:
        return request
    body = request.html
    if request.options.get("click_tracking"):
        body = rewrite_links(body, base=base, secret=secret, recipient_id=recipient_id)
    if request.options.get("open_tracking"):
        body = add_pixel(body, base=base, secret=secret, recipient_id=recipient_id)
    return dataclasses.replace(request, html=body)
