"""Filling a templated send for one recipient, at delivery time.

A send that uses a template stores the template's source (html, and the subject it resolved to) in the message, so
every retry renders the same thing even if the template changes or is deleted meanwhile. The worker compiles the
parts once per delivery job (``compile_send``) and renders them for each recipient (``personalise``).

What is rendered: ``html`` and ``amp_html`` with HTML escaping of ``{{ }}``; ``text``, ``subject`` and
``from_name`` without (they are not HTML). The sender address itself is never templated: it was checked against
the team's approved domains when the send was accepted. Rendered header values (subject, from name) are checked with
the same rule as every header value: substitution data is caller input, so when the send is accepted the subject
and from name are rendered for each recipient and a line break or control character in any of them is a 422 naming
the field (``check_headers``). They are cut to their header limits.

The data of one recipient is the transmission's ``substitution_data`` overridden by the recipient's own values. The
Lettr contract has no field for per-recipient data, so those are the reserved keys: ``address`` (an object with
``email``, as in SparkPost), ``email`` (the address as a string), ``env_from`` and ``return_path`` (the sender).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from postroom.core.headers import unsafe_message
from postroom.errors import ValidationFailed
from postroom.messages.request import MAX_BODY_PART, SendRequest
from postroom.templates.mergetags import (
    CompiledTemplate,
    Limits,
    RenderLimitExceeded,
    TemplateSyntaxError,
    compile_template,
)

log = logging.getLogger("postroom.templates")

_PARTS: tuple[tuple[str, bool], ...] = (
    ("subject", False),
    ("from_name", False),
    ("html", True),
    ("amp_html", True),
    ("text", False),
)
"""(SendRequest field, whether ``{{ }}`` output is HTML-escaped in it)."""

_HEADER_LIMITS = {"subject": 998, "from_name": 255}


class GenerationFailed(Exception):
    """A recipient's message could not be rendered; retrying would fail the same way."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsafeHeader(GenerationFailed):
    """A subject or from name rendered to a value no header may contain."""


def personalises(request: SendRequest) -> bool:
    """Whether the send is rendered per recipient: it uses a template and substitutions are not switched off."""
    return request.template_slug is not None and request.options.get("perform_substitutions", True)


def syntax_message(error: TemplateSyntaxError) -> str:
    """How a merge-tag syntax error reads in a 422: the engine's message and where it is."""
    return f"{error.message} (line {error.line}, column {error.column})"


def compile_checked(field: str, source: str) -> CompiledTemplate:
    """Compile one part; a syntax error is a 422 naming ``field`` with the line and column."""
    try:
        return compile_template(source)
    except TemplateSyntaxError as error:
        raise ValidationFailed({field: [syntax_message(error)]}) from None


def check_send(request: SendRequest) -> None:
    """Refuse, at accept time, a templated send whose own parts (subject, text …) have a merge-tag syntax error,
    so that no syntax error is ever found at delivery time. Every bad part is named in one 422."""
    if not personalises(request):
        return
    errors: dict[str, list[str]] = {}
    for name, _ in _PARTS:
        source = getattr(request, name)
        if source is None:
            continue
        try:
            compile_template(source)
        except TemplateSyntaxError as error:
            errors[name] = [syntax_message(error)]
    if errors:
        raise ValidationFailed(errors)


@dataclass(frozen=True, slots=True)
class CompiledSend:
    request: SendRequest
    parts: dict[str, tuple[CompiledTemplate, bool]]


RENDER_LIMITS = Limits(max_output_chars=2 * MAX_BODY_PART)
"""A rendered part may be up to twice the largest part a send accepts (loops expand), and no more."""


def compile_send(request: SendRequest) -> CompiledSend:
    """Compile every templated part of a stored send once; ``GenerationFailed`` if one does not compile (it was
    checked when accepted, so only a changed engine could get here)."""
    parts: dict[str, tuple[CompiledTemplate, bool]] = {}
    for name, escape in _PARTS:
        source = getattr(request, name)
        if source is None:
            continue
        try:
            parts[name] = (compile_template(source), escape)
        except TemplateSyntaxError as error:
            raise GenerationFailed(f"The {name} does not compile: {syntax_message(error)}") from None
    return CompiledSend(request=request, parts=parts)


def recipient_data(request: SendRequest, recipient: str) -> dict[str, Any]:
    """The transmission's substitution data with the recipient's reserved keys on top."""
    return {
        **(request.substitution_data or {}),
        "address": {"email": recipient},
        "email": recipient,
        "env_from": request.from_email,
        "return_path": request.from_email,
    }


def _render_part(name: str, template: CompiledTemplate, escape: bool, data: Mapping[str, Any]) -> str:
    """One part for one recipient; ``GenerationFailed`` when it cannot be rendered or is an unusable header."""
    try:
        value = template.render(data, escape_html=escape, limits=RENDER_LIMITS)
    except RenderLimitExceeded as error:
        raise GenerationFailed(f"Rendering the {name} exceeded a limit: {error}") from None
    except Exception as error:  # a deterministic failure: a retry would fail the same way, so never retry
        log.exception("rendering the %s failed", name)
        raise GenerationFailed(f"Rendering the {name} failed: {type(error).__name__}") from None
    if name in _HEADER_LIMITS:
        problem = unsafe_message(name, value)
        if problem is not None:
            raise UnsafeHeader(problem)
        value = value.strip()[: _HEADER_LIMITS[name]]
    return value


def check_headers(request: SendRequest) -> None:
    """Refuse, at accept time, a templated send whose subject or from name renders to a line break or control
    character for some recipient: a 422 naming the field and the recipient. A part that fails to render for
    another reason is left to delivery, which records a ``generation_failure`` for that recipient."""
    if not personalises(request):
        return
    errors: dict[str, list[str]] = {}
    for name, _ in _PARTS:
        source = getattr(request, name)
        if name not in _HEADER_LIMITS or source is None or "{{" not in source:
            continue
        try:
            template = compile_template(source)
        except TemplateSyntaxError:
            continue  # check_send names syntax errors
        for recipient, _kind in request.recipients():
            try:
                _render_part(name, template, False, recipient_data(request, recipient))
            except UnsafeHeader as failure:
                errors[name] = [f"{failure.reason[:-1]}, as rendered for {recipient}."]
                break
            except GenerationFailed:
                break
    if errors:
        raise ValidationFailed(errors)


def personalise(compiled: CompiledSend, recipient: str) -> SendRequest:
    """The send as ``recipient`` gets it: every templated part rendered with the recipient's data."""
    data: Mapping[str, Any] = recipient_data(compiled.request, recipient)
    rendered: dict[str, Any] = {}
    for name, (template, escape) in compiled.parts.items():
        rendered[name] = _render_part(name, template, escape, data)
    if "from_name" in rendered and not rendered["from_name"]:
        rendered["from_name"] = None  # an empty display name means none
    return dataclasses.replace(compiled.request, **rendered)
