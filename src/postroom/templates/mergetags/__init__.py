"""SparkPost-style merge tags: compile a template once, render it for each recipient.

    >>> template = compile_template("Hello {{ first_name or 'there' }}!")
    >>> template.render({"first_name": "<Ann>"})
    'Hello &lt;Ann&gt;!'
    >>> template.merge_tags()
    [{'key': 'first_name', 'required': False}]

The language:

- ``{{ expr }}`` prints a value, HTML-escaped when ``escape_html`` (html and amp_html parts) and URL-encoded
  when the tag sits inside an ``http(s)://`` link; ``{{{ expr }}}`` prints it raw.
- Values: ``name``, ``a.b``, ``a['b']``, ``a[key_var]``, ``list[1]`` (arrays count from 1); ``'…'``/``"…"``
  strings, numbers, ``true``, ``false``, ``nil``. Missing values print nothing.
- Operators (Lua precedence): ``or``, ``and``, ``== != ~= < > <= >=``, ``+ -``, ``* / %``, unary ``not - #``
  (``#list`` is the length), parentheses; ``empty(list)``.
- ``{{if cond}}`` (optionally ``then``) … ``{{elseif cond}}`` … ``{{else}}`` … ``{{end}}``.
- ``{{each list}}`` … ``{{loop_var}}``, ``{{loop_var.field}}``, ``{{loop_index}}`` (from 1) … ``{{end}}``;
  in nested loops ``loop_vars.<array name>`` is the element of the loop over that array.
- ``{{ opening_double_curly() }}`` and friends print literal braces; ``{{ render_dynamic_content(x) }}`` renders
  the template held in ``x`` with the same data.

``render.py``, ``parser.py`` and ``extract.py`` describe the exact semantics; ``limits.py`` the resource caps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from postroom.templates.mergetags.extract import merge_tags as _merge_tags
from postroom.templates.mergetags.lexer import TemplateSyntaxError
from postroom.templates.mergetags.limits import DEFAULT_LIMITS, Limits, RenderLimitExceeded
from postroom.templates.mergetags.parser import KEYWORDS, RESERVED_VARIABLES, parse
from postroom.templates.mergetags.render import Program

__all__ = [
    "DEFAULT_LIMITS",
    "KEYWORDS",
    "RESERVED_VARIABLES",
    "CompiledTemplate",
    "Limits",
    "RenderLimitExceeded",
    "TemplateSyntaxError",
    "compile_template",
    "render",
]


class CompiledTemplate:
    """A parsed template, ready to render any number of times (it holds no per-render state)."""

    __slots__ = ("source", "_template", "_program", "_merge_tags")

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = parse(source)
        self._program = Program(self._template)
        self._merge_tags: list[dict[str, Any]] | None = None

    def render(self, data: Mapping[str, Any], *, escape_html: bool = True, limits: Limits = DEFAULT_LIMITS) -> str:
        """The template filled with ``data``. Raises only ``RenderLimitExceeded``."""
        return self._program.render(data, escape_html, limits)

    def merge_tags(self) -> list[dict[str, Any]]:
        """The MergeTag objects of this template; see ``extract.py`` for the rules."""
        if self._merge_tags is None:
            self._merge_tags = _merge_tags(self._template)
        return [
            {**tag, "children": [dict(child) for child in tag["children"]]} if "children" in tag else dict(tag)
            for tag in self._merge_tags
        ]

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.source[:40]!r}{'…' if len(self.source) > 40 else ''})"


def compile_template(source: str) -> CompiledTemplate:
    """Parse ``source``; ``TemplateSyntaxError`` (with line and column) if it is not a valid template."""
    return CompiledTemplate(source)


def render(source: str, data: Mapping[str, Any], *, escape_html: bool = True) -> str:
    """Compile and render in one step, for templates used once."""
    return compile_template(source).render(data, escape_html=escape_html)
