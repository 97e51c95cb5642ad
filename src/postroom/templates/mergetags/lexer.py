"""Splitting a template into literal text and tags, and a tag's content into tokens.

One forward pass with ``str.find`` and character tests; no regular expressions, so there is nothing for a hostile
template to make backtrack. Positions are character offsets; ``position`` turns one into a 1-based line and column
only when an error needs it.

A tag is ``{{ … }}`` or ``{{{ … }}}`` (raw). Inside a tag whitespace (including line breaks) separates tokens and
is otherwise ignored; string literals may contain ``}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from postroom.templates.mergetags.limits import MAX_TAGS, MAX_TOKENS

TokenKind = Literal["name", "number", "string", "op"]

_TWO_CHAR_OPS = frozenset({"==", "!=", "~=", "<=", ">="})
_ONE_CHAR_OPS = frozenset("<>+-*/%#()[].,")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_SPACE = frozenset(" \t\r\n\f\v")


class TemplateSyntaxError(ValueError):
    """The template cannot be compiled. ``line`` and ``column`` (1-based) point at the offending token."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    line_start = source.rfind("\n", 0, offset) + 1
    return source.count("\n", 0, offset) + 1, offset - line_start + 1


def syntax_error(source: str, offset: int, message: str) -> TemplateSyntaxError:
    line, column = position(source, offset)
    return TemplateSyntaxError(message, line, column)


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    value: str | int | float
    """The name, operator or string content, or the number's value."""
    offset: int


@dataclass(frozen=True, slots=True)
class TextSegment:
    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class TagSegment:
    tokens: tuple[Token, ...]
    raw: bool
    """``{{{ … }}}``: the value is inserted without HTML escaping or URL encoding."""
    offset: int
    """Where the opening braces are."""
    close_offset: int
    """Where the closing braces are."""


Segment = TextSegment | TagSegment


def tokenize(source: str) -> list[Segment]:
    """The template as alternating text and tag segments, in order."""
    segments: list[Segment] = []
    pos = 0
    tags = token_count = 0
    while True:
        start = source.find("{{", pos)
        if start < 0:
            if pos < len(source):
                segments.append(TextSegment(source[pos:], pos))
            return segments
        if start > pos:
            segments.append(TextSegment(source[pos:start], pos))
        tags += 1
        if tags > MAX_TAGS:
            raise syntax_error(source, start, f"too many tags (more than {MAX_TAGS})")
        raw = source.startswith("{{{", start)
        tokens, close = _scan_tag(source, start, raw, MAX_TOKENS - token_count)
        token_count += len(tokens)
        pos = close + (3 if raw else 2)
        segments.append(TagSegment(tokens, raw, start, close))


def _scan_tag(source: str, start: int, raw: bool, budget: int) -> tuple[tuple[Token, ...], int]:
    """Tokens of the tag opening at ``start`` (at most ``budget``) and the offset of its closing braces."""
    opening = "{{{" if raw else "{{"
    closing = "}}}" if raw else "}}"
    end = len(source)
    i = start + len(opening)
    tokens: list[Token] = []
    while True:
        while i < end and source[i] in _SPACE:
            i += 1
        if i >= end or source[i] == "{":
            # Running into the next tag (or the end) means this one was never closed; say so where it opened.
            raise syntax_error(source, start, f"'{opening}' is not closed with '{closing}'")
        char = source[i]
        if char == "}":
            if source.startswith(closing, i):
                return tuple(tokens), i
            if raw and source.startswith("}}", i):
                raise syntax_error(source, i, "'{{{' must be closed with '}}}'")
            raise syntax_error(source, i, "unexpected '}'")
        if len(tokens) >= budget:
            raise syntax_error(source, i, f"too many tokens in tags (more than {MAX_TOKENS})")
        if char in _NAME_START:
            j = i + 1
            while j < end and source[j] in _NAME_CHARS:
                j += 1
            tokens.append(Token("name", source[i:j], i))
            i = j
        elif char in _DIGITS:
            i = _scan_number(source, i, tokens)
        elif char == "'" or char == '"':
            i = _scan_string(source, i, tokens)
        elif source[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append(Token("op", source[i : i + 2], i))
            i += 2
        elif char in _ONE_CHAR_OPS:
            tokens.append(Token("op", char, i))
            i += 1
        elif char == "=":
            raise syntax_error(source, i, "unexpected '=' (use '==' to compare)")
        elif char == "!":
            raise syntax_error(source, i, "unexpected '!' (use 'not' or '!=')")
        else:
            raise syntax_error(source, i, f"unexpected character {char!r}")


def _scan_number(source: str, start: int, tokens: list[Token]) -> int:
    end = len(source)
    i = start
    while i < end and source[i] in _DIGITS:
        i += 1
    is_float = False
    if i + 1 < end and source[i] == "." and source[i + 1] in _DIGITS:
        is_float = True
        i += 1
        while i < end and source[i] in _DIGITS:
            i += 1
    if i < end and source[i] in "eE":
        j = i + 1
        if j < end and source[j] in "+-":
            j += 1
        if j < end and source[j] in _DIGITS:
            is_float = True
            i = j
            while i < end and source[i] in _DIGITS:
                i += 1
    if i < end and source[i] in _NAME_CHARS:
        raise syntax_error(source, start, "malformed number")
    text = source[start:i]
    if is_float:
        value: int | float = float(text)
        if value == float("inf"):
            raise syntax_error(source, start, "number is too large")
    elif len(text) > 18:  # beyond 64-bit integers, as in the data a template can compare against
        raise syntax_error(source, start, "number is too large")
    else:
        value = int(text)
    tokens.append(Token("number", value, start))
    return i


def _scan_string(source: str, start: int, tokens: list[Token]) -> int:
    quote = source[start]
    end = len(source)
    i = start + 1
    parts: list[str] = []
    chunk_start = i
    while True:
        if i >= end or source[i] == "\n":
            raise syntax_error(source, start, "string is not closed")
        char = source[i]
        if char == quote:
            parts.append(source[chunk_start:i])
            tokens.append(Token("string", "".join(parts), start))
            return i + 1
        if char == "\\":
            parts.append(source[chunk_start:i])
            if i + 1 >= end or source[i + 1] not in _ESCAPES:
                raise syntax_error(source, i, "unknown escape sequence in string")
            parts.append(_ESCAPES[source[i + 1]])
            i += 2
            chunk_start = i
        else:
            i += 1
