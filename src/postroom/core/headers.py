"""What a header value may contain, and how a header is laid out in lines: the one place both are decided.

Every value that reaches a header of a delivered message (subject, display names, custom headers, attachment
names), whether it came from the API, a template rendering or an SMTP submission, is checked with
``unsafe_character`` when it is accepted. Refused: every C0 control but TAB (CR, LF, NUL, VT, FF, FS, GS, RS …),
DEL, every C1 control, and the Unicode line and paragraph separators. Python's ``email`` package and many mail
servers treat several of these as line breaks, so any of them could start a new header line at the next hop.

RFC 5322 limits a line to 998 characters. ``fold`` lays a header out in lines of at most 78 characters where the
value has whitespace to break at, and says when it cannot be kept under 998 (a long run without whitespace);
``header_line_problem`` is the same verdict as a sentence, for the 422 at acceptance.
"""

from __future__ import annotations

import re

MAX_LINE = 998
"""Characters of one header line, CRLF excluded (RFC 5322 §2.1.1)."""
FOLD_WIDTH = 78
MAX_HEADER_NAME = 76
"""Characters of a header name: ``Name: `` then leaves room for a value on the 78-character first line."""
CRLF = "\r\n"

SAFE_CHARACTER = r"[^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]"
"""A regular expression (Python and JSON Schema alike) for one character a header value may contain."""
_UNSAFE = re.compile(SAFE_CHARACTER.replace("[^", "[", 1))
_WORDS = re.compile(r"[ \t]*[^ \t]+|[ \t]+$")


def unsafe_character(value: str) -> str | None:
    """The first character of ``value`` that must not be in a header (as ``U+000B``), or None if there is none."""
    found = _UNSAFE.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def unsafe_message(field: str, value: str) -> str | None:
    """The 422 message for a header value with a forbidden character, or None if ``value`` is safe."""
    character = unsafe_character(value)
    if character is None:
        return None
    return f"The {field} must not contain line breaks or control characters (found {character})."


def fold(name: str, value: str) -> str | None:
    """``Name: value`` with CRLF + whitespace inserted before existing whitespace so that lines stay within 78
    characters where the value allows it; None when some line would still be over 998. Unfolding (removing each
    CRLF) gives back exactly ``Name: value``. ``value`` is ASCII (non-ASCII values are encoded words first)."""
    lines: list[str] = []
    line = ""
    for number, word in enumerate(_WORDS.findall(f"{name}: {value}")):
        # Never between the name and the first word: a parser would take the fold's whitespace into the value.
        if number > 1 and len(line) + len(word) > FOLD_WIDTH and word[0] in " \t" and word.strip():
            lines.append(line)
            line = word
        else:
            line += word
    lines.append(line)
    if any(len(item) > MAX_LINE for item in lines):
        return None
    return CRLF.join(lines)


def header_line_problem(name: str, value: str) -> str | None:
    """Why header ``name`` with ASCII ``value`` cannot be written within RFC 5322's line limit, or None."""
    if len(name) > MAX_HEADER_NAME:
        return f"The header name must not be longer than {MAX_HEADER_NAME} characters."
    if value.isascii() and fold(name, value) is None:
        return f"The header value has a run of characters without spaces too long to fit a {MAX_LINE}-character line."
    return None
