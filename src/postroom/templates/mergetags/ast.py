"""The parsed form of a template: a tree of nodes (text, output tags, blocks) holding expression trees.

Chains of one operator level (``a + b - c``, ``a or b or c``) and paths (``a.b[1].c``) are flat tuples rather
than nested pairs, so that walking them never recurses deeper than the template's real nesting. Nodes are
immutable; the renderer and the merge-tag extractor both walk the same tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ---------------------------------------------------------------------------------------------------------------
# Expressions


@dataclass(frozen=True, slots=True)
class Constant:
    """A string, number, ``true``, ``false`` or ``nil`` written in the template."""

    value: str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Variable:
    """A top-level key of the substitution data."""

    name: str


@dataclass(frozen=True, slots=True)
class LoopValue:
    """``loop_var`` (``up`` = 0) or ``loop_vars.<name>``: the current element of an enclosing ``{{each}}``,
    ``up`` loops out from the innermost one."""

    up: int


@dataclass(frozen=True, slots=True)
class LoopIndex:
    """``loop_index``: the position of the innermost loop's current element, from 1 like array indexes, so that
    ``array[loop_index]`` is ``loop_var``."""


@dataclass(frozen=True, slots=True)
class Key:
    """``.name`` or ``['name']`` in a path."""

    name: str


@dataclass(frozen=True, slots=True)
class Index:
    """``[expression]`` in a path: 1-based position in an array, or a key of an object when it is a string."""

    expression: Expression


@dataclass(frozen=True, slots=True)
class Path:
    """A value followed by one or more ``.key`` / ``[index]`` steps."""

    base: Expression
    steps: tuple[Key | Index, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    operator: Literal["not", "-", "#"]
    operand: Expression


@dataclass(frozen=True, slots=True)
class Chain:
    """``first op1 x1 op2 x2 …`` for one precedence level of comparison or arithmetic, evaluated left to right."""

    first: Expression
    rest: tuple[tuple[str, Expression], ...]


@dataclass(frozen=True, slots=True)
class Logical:
    """``a and b and …`` / ``a or b or …``: the value of the operand that decides, as in Lua."""

    operator: Literal["and", "or"]
    operands: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Empty:
    """``empty(x)``: true when ``x`` is missing, null or an empty array, object or string."""

    argument: Expression


Expression = Constant | Variable | LoopValue | LoopIndex | Path | Unary | Chain | Logical | Empty

# ---------------------------------------------------------------------------------------------------------------
# Template nodes


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Output:
    """``{{ expression }}`` (escaped for HTML, or URL-encoded inside a link) or ``{{{ expression }}}`` (raw)."""

    expression: Expression
    raw: bool
    in_url: bool
    """The tag sits inside an ``http://``/``https://`` link, where SparkPost URL-encodes instead of escaping."""


@dataclass(frozen=True, slots=True)
class DynamicContent:
    """``{{ render_dynamic_content(expression) }}``: the value is itself a template, rendered with the same data."""

    expression: Expression


@dataclass(frozen=True, slots=True)
class If:
    """``{{if}}`` with its ``{{elseif}}`` branches, in order, and the ``{{else}}`` body (empty when absent)."""

    branches: tuple[tuple[Expression, tuple[Node, ...]], ...]
    otherwise: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Each:
    """``{{each path}} … {{end}}``. ``name`` is the path's last key, the name ``loop_vars.<name>`` refers to."""

    iterable: Expression
    name: str
    body: tuple[Node, ...]


Node = Text | Output | DynamicContent | If | Each


@dataclass(frozen=True, slots=True)
class Template:
    nodes: tuple[Node, ...]
    block_depth: int
    """Deepest nesting of ``{{if}}``/``{{each}}`` blocks."""
    expression_depth: int
    """Deepest nesting inside one expression (parentheses, brackets, unary operators, ``empty()``)."""
