"""The merge tags a template uses, found by walking the same tree the renderer runs.

Lettr does not document its rules (§12 question 13), so these are ours:

- A key is the variable's path as written, up to the first computed or numeric index: ``{{user.name}}`` →
  ``user.name``, ``{{address['city']}}`` → ``address.city``, ``{{items[1].name}}`` and ``{{items[i]}}`` →
  ``items`` (and ``i``). A bracketed key that is not a plain name ends the path too.
- ``required`` is true when the value is printed by a plain tag somewhere. It is false when the key is only used
  as a fallback-guarded value (any operand of ``or``: ``{{ name or 'Customer' }}``), only in ``{{if}}`` /
  ``{{elseif}}`` conditions or ``empty()``, or only looped over.
- ``{{each items}}`` gives ``{"key": "items", "required": false, "children": [{"key": …}]}`` with the fields used
  as ``loop_var.<field>`` (or ``loop_vars.items.<field>``) inside it, in the same path form. A loop nested in a
  loop adds its array to the outer loop's children; the fields of the inner elements are not listed (MergeTag
  children have no children).
- ``loop_var``, ``loop_vars``, ``loop_index``, reserved words and the variables SparkPost fills in itself
  (``address``, ``email``, ``email_id``, ``env_from``, ``return_path``) are never listed.
- Tags are listed once each, in order of first appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postroom.templates.mergetags import ast
from postroom.templates.mergetags.parser import RESERVED_VARIABLES

_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")


@dataclass
class _Tag:
    key: str
    required: bool
    children: list[str] | None = None
    """The fields used inside loops over this key; ``None`` when it is never looped over."""


def merge_tags(template: ast.Template) -> list[dict[str, Any]]:
    """MergeTag objects for ``template``."""
    extractor = _Extractor()
    extractor.nodes(template.nodes)
    result: list[dict[str, Any]] = []
    for tag in extractor.tags.values():
        entry: dict[str, Any] = {"key": tag.key, "required": tag.required}
        if tag.children is not None:
            entry["children"] = [{"key": child} for child in tag.children]
        result.append(entry)
    return result


def _is_name(text: str) -> bool:
    return bool(text) and text[0] in _NAME_START and all(char in _NAME_CHARS for char in text)


def _static_names(steps: tuple[ast.Key | ast.Index, ...]) -> tuple[list[str], bool]:
    """The leading plain-name keys of a path, and whether they are the whole path."""
    names: list[str] = []
    for step in steps:
        if not isinstance(step, ast.Key) or not _is_name(step.name):
            return names, False
        names.append(step.name)
    return names, True


class _Extractor:
    def __init__(self) -> None:
        self.tags: dict[str, _Tag] = {}
        self.loops: list[list[str] | None] = []
        """For each enclosing loop, innermost last: where its element fields are recorded (``None``: nowhere)."""

    def _add(self, key: str, required: bool) -> _Tag:
        tag = self.tags.get(key)
        if tag is None:
            tag = self.tags[key] = _Tag(key, required)
        else:
            tag.required = tag.required or required
        return tag

    def _add_child(self, up: int, key: str) -> None:
        children = self.loops[len(self.loops) - 1 - up]
        if children is not None and key not in children:
            children.append(key)

    def nodes(self, nodes: tuple[ast.Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Output, ast.DynamicContent)):
                self.expression(node.expression, required=True)
            elif isinstance(node, ast.If):
                for condition, body in node.branches:
                    self.expression(condition, required=False)
                    self.nodes(body)
                self.nodes(node.otherwise)
            elif isinstance(node, ast.Each):
                self.loops.append(self._loop(node.iterable))
                self.nodes(node.body)
                self.loops.pop()

    def _loop(self, iterable: ast.Expression) -> list[str] | None:
        """Record what a loop iterates over; where its element fields go."""
        base, steps = (iterable.base, iterable.steps) if isinstance(iterable, ast.Path) else (iterable, ())
        names, whole = _static_names(steps)
        if not whole:
            self.expression(iterable, required=False)
            return None
        if isinstance(base, ast.Variable):
            if base.name in RESERVED_VARIABLES:
                return None
            tag = self._add(".".join([base.name, *names]), required=False)
            if tag.children is None:
                tag.children = []
            return tag.children
        if isinstance(base, ast.LoopValue) and names:
            self._add_child(base.up, ".".join(names))
        return None

    def expression(self, expression: ast.Expression, *, required: bool) -> None:
        if isinstance(expression, ast.Variable):
            if expression.name not in RESERVED_VARIABLES:
                self._add(expression.name, required)
        elif isinstance(expression, ast.Path):
            self._path(expression, required)
        elif isinstance(expression, ast.Unary):
            self.expression(expression.operand, required=required)
        elif isinstance(expression, ast.Chain):
            self.expression(expression.first, required=required)
            for _, operand in expression.rest:
                self.expression(operand, required=required)
        elif isinstance(expression, ast.Logical):
            for operand in expression.operands:
                self.expression(operand, required=required and expression.operator == "and")
        elif isinstance(expression, ast.Empty):
            self.expression(expression.argument, required=False)
        # constants, and loop_var / loop_index on their own, name no merge tag

    def _path(self, path: ast.Path, required: bool) -> None:
        names, _ = _static_names(path.steps)
        base = path.base
        if isinstance(base, ast.Variable):
            if base.name not in RESERVED_VARIABLES:
                self._add(".".join([base.name, *names]), required)
        elif isinstance(base, ast.LoopValue):
            if names:
                self._add_child(base.up, ".".join(names))
        else:
            self.expression(base, required=required)
        for step in path.steps:
            if isinstance(step, ast.Index):
                self.expression(step.expression, required=required)
