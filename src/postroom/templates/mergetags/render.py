"""Rendering: the tree is turned once into nested closures, which a render then calls with one recipient's data.

Values are JSON-like (dict, list, str, int, float, bool, None). They are read with ``Mapping.get`` and list
indexing only: no attribute access, no ``str()`` of arbitrary objects, nothing a template could use to reach a
Python object. Rendering never raises on data; a value of the wrong type renders empty or is false:

- Truth is Lua's (SparkPost's expressions are Lua): only ``false`` and missing/``null`` are false; ``0``, ``""``
  and ``[]`` are true. ``a or b`` is ``a`` when ``a`` is true, else ``b``; ``a and b`` is ``a`` when ``a`` is
  false, else ``b``.
- ``==``/``!=`` compare numbers with numbers and strings with strings (``1 == "1"`` is false). ``<``, ``>``,
  ``<=``, ``>=`` between anything else are false.
- Arithmetic takes numbers and numeric strings (``"10" + 1`` is 11, as in Lua); anything else, division by zero
  or overflow gives an empty value. ``/`` always divides exactly (``7 / 2`` is 3.5). Integers beyond 64 bits
  turn into floats, so a template cannot build huge numbers.
- Output: strings as they are, integers in decimal, floats as Lua prints them (``%.14g``: 5.0 → ``5``,
  39.99 → ``39.99``), booleans as ``true``/``false``, and null, arrays and objects as nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from postroom.templates.mergetags import ast
from postroom.templates.mergetags.lexer import TemplateSyntaxError
from postroom.templates.mergetags.limits import Limits, RenderLimitExceeded
from postroom.templates.mergetags.parser import parse


class _Context:
    """The state of one render."""

    __slots__ = ("data", "escape", "parts", "size", "limits", "iterations", "loops", "depth")

    def __init__(self, data: Mapping[str, Any], escape: bool, limits: Limits) -> None:
        self.data = data
        self.escape = escape
        self.parts: list[str] = []
        self.size = 0
        self.limits = limits
        self.iterations = 0
        self.loops: list[tuple[Any, int]] = []
        """(current element, 1-based index) of each enclosing loop, innermost last."""
        self.depth = 0
        """Block depth at which the template being rendered starts (above 0 inside dynamic content)."""


Runner = Callable[[_Context], None]
Evaluator = Callable[[_Context], Any]


class Program:
    """A compiled template: its runner and the nesting it needs."""

    __slots__ = ("run", "block_depth", "expression_depth")

    def __init__(self, template: ast.Template) -> None:
        self.run = _block(template.nodes, 0)
        self.block_depth = template.block_depth
        self.expression_depth = template.expression_depth

    def render(self, data: Mapping[str, Any], escape_html: bool, limits: Limits) -> str:
        deepest = max(self.block_depth, self.expression_depth)
        if deepest > limits.max_depth:
            raise RenderLimitExceeded(f"the template nests {deepest} levels deep; the limit is {limits.max_depth}")
        context = _Context(data if isinstance(data, Mapping) else {}, escape_html, limits)
        self.run(context)
        return "".join(context.parts)


# ---------------------------------------------------------------------------------------------------------------
# Values


def truthy(value: Any) -> bool:
    return value is not None and value is not False


def to_text(value: Any) -> str:
    """How a value reads in the output."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        try:
            return str(value)
        except ValueError:  # more digits than Python will print
            return ""
    if kind is float:
        return format(value, ".14g") if math.isfinite(value) else ""
    if isinstance(value, str):
        return str.__str__(value)
    return ""


def escape_html(text: str) -> str:
    """``& < > " '`` as character references, so a value cannot open a tag or leave an attribute."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def encode_url(text: str) -> str:
    """Every byte but letters, digits and ``-._~`` percent-encoded (SparkPost: "Daily Deal!" → ``Daily%20Deal%21``)."""
    return quote(text, safe="")


_INT_LIMIT = 2**63
_NUMERIC_CHARS = frozenset("0123456789+-.eE")


def _number(value: Any) -> int | float | None:
    kind = type(value)
    if kind is int:
        return value if -_INT_LIMIT <= value < _INT_LIMIT else _as_float(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str:
        text = value.strip()
        if not text or len(text) > 64 or not _NUMERIC_CHARS.issuperset(text):
            return None
        try:
            return _number(int(text))
        except ValueError:
            pass
        try:
            return _number(float(text))
        except ValueError:
            return None
    return None


def _as_float(value: int) -> float | None:
    try:
        return float(value)
    except OverflowError:
        return None


def _arithmetic(operation: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        a, b = _number(left), _number(right)
        if a is None or b is None:
            return None
        try:
            return _number(operation(a, b))
        except (ZeroDivisionError, OverflowError):
            return None

    return apply


def _comparable(left: Any, right: Any) -> bool:
    kinds = (type(left), type(right))
    return kinds[0] is kinds[1] is str or (kinds[0] in (int, float) and kinds[1] in (int, float))


def equal(left: Any, right: Any) -> bool:
    """Numbers by value, strings by content, booleans and null by identity; arrays and objects only to themselves."""
    if left is None or right is None or type(left) is bool or type(right) is bool:
        return left is right
    if _comparable(left, right):
        return bool(left == right)
    return left is right


def _ordered(operation: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(left: Any, right: Any) -> bool:
        return _comparable(left, right) and operation(left, right)

    return apply


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _arithmetic(lambda a, b: a + b),
    "-": _arithmetic(lambda a, b: a - b),
    "*": _arithmetic(lambda a, b: a * b),
    "/": _arithmetic(lambda a, b: a / b),
    "%": _arithmetic(lambda a, b: a % b),
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": _ordered(lambda a, b: a < b),
    ">": _ordered(lambda a, b: a > b),
    "<=": _ordered(lambda a, b: a <= b),
    ">=": _ordered(lambda a, b: a >= b),
}


def _length(value: Any) -> int | None:
    """``#value``: the length of an array or string; nothing for anything else."""
    if isinstance(value, (list, tuple, str)):
        return len(value)
    return None


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, str, Mapping)):
        return len(value) == 0
    return False


def _key(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else None


def _item(value: Any, index: Any) -> Any:
    """``value[index]``: a key when ``index`` is a string, otherwise a 1-based position in an array."""
    if type(index) is str:
        return _key(value, index)
    if not isinstance(value, (list, tuple)):
        return None
    if type(index) is float and index.is_integer():
        index = int(index)
    if type(index) is int and 1 <= index <= len(value):
        return value[index - 1]
    return None


# ---------------------------------------------------------------------------------------------------------------
# Expressions


def _evaluator(expression: ast.Expression) -> Evaluator:
    if isinstance(expression, ast.Constant):
        constant = expression.value
        return lambda context: constant
    if isinstance(expression, ast.Variable):
        name = expression.name
        return lambda context: context.data.get(name)
    if isinstance(expression, ast.LoopValue):
        position = -1 - expression.up
        return lambda context: context.loops[position][0]
    if isinstance(expression, ast.LoopIndex):
        return lambda context: context.loops[-1][1]
    if isinstance(expression, ast.Path):
        return _path(expression)
    if isinstance(expression, ast.Unary):
        return _unary(expression)
    if isinstance(expression, ast.Chain):
        return _chain(expression)
    if isinstance(expression, ast.Logical):
        return _logical(expression)
    argument = _evaluator(expression.argument)
    return lambda context: _is_empty(argument(context))


def _path(path: ast.Path) -> Evaluator:
    base = _evaluator(path.base)
    steps = tuple(
        (step.name, None) if isinstance(step, ast.Key) else ("", _evaluator(step.expression)) for step in path.steps
    )

    def evaluate(context: _Context) -> Any:
        value = base(context)
        for name, index in steps:
            if value is None:
                return None
            value = _key(value, name) if index is None else _item(value, index(context))
        return value

    return evaluate


def _unary(unary: ast.Unary) -> Evaluator:
    operand = _evaluator(unary.operand)
    if unary.operator == "not":
        return lambda context: not truthy(operand(context))
    if unary.operator == "#":
        return lambda context: _length(operand(context))
    subtract = _BINARY["-"]
    return lambda context: subtract(0, operand(context))


def _chain(chain: ast.Chain) -> Evaluator:
    first = _evaluator(chain.first)
    rest = tuple((_BINARY[operator], _evaluator(operand)) for operator, operand in chain.rest)

    def evaluate(context: _Context) -> Any:
        value = first(context)
        for operation, operand in rest:
            value = operation(value, operand(context))
        return value

    return evaluate


def _logical(logical: ast.Logical) -> Evaluator:
    operands = tuple(_evaluator(operand) for operand in logical.operands)
    stop_when = logical.operator == "or"  # "or" stops at the first true operand, "and" at the first false one

    def evaluate(context: _Context) -> Any:
        value = None
        for operand in operands:
            value = operand(context)
            if truthy(value) is stop_when:
                return value
        return value

    return evaluate


# ---------------------------------------------------------------------------------------------------------------
# Nodes


def _emit(context: _Context, text: str) -> None:
    context.size += len(text)
    if context.size > context.limits.max_output_chars:
        raise RenderLimitExceeded(f"the output exceeds {context.limits.max_output_chars} characters")
    context.parts.append(text)


def _block(nodes: tuple[ast.Node, ...], depth: int) -> Runner:
    runners = tuple(_runner(node, depth) for node in nodes)
    if len(runners) == 1:
        return runners[0]

    def run(context: _Context) -> None:
        for runner in runners:
            runner(context)

    return run


def _runner(node: ast.Node, depth: int) -> Runner:
    if isinstance(node, ast.Text):
        text = node.text
        return lambda context: _emit(context, text)
    if isinstance(node, ast.Output):
        return _output(node)
    if isinstance(node, ast.If):
        return _if(node, depth + 1)
    if isinstance(node, ast.Each):
        return _each(node, depth + 1)
    return _dynamic(node, depth)


def _output(node: ast.Output) -> Runner:
    evaluate = _evaluator(node.expression)
    raw, in_url = node.raw, node.in_url

    def run(context: _Context) -> None:
        text = to_text(evaluate(context))
        if not text:
            return
        if not raw:
            if in_url:
                text = encode_url(text)
            elif context.escape:
                text = escape_html(text)
        _emit(context, text)

    return run


def _if(node: ast.If, depth: int) -> Runner:
    branches = tuple((_evaluator(condition), _block(body, depth)) for condition, body in node.branches)
    otherwise = _block(node.otherwise, depth)

    def run(context: _Context) -> None:
        for condition, body in branches:
            if truthy(condition(context)):
                body(context)
                return
        otherwise(context)

    return run


def _each(node: ast.Each, depth: int) -> Runner:
    iterable = _evaluator(node.iterable)
    body = _block(node.body, depth)

    def run(context: _Context) -> None:
        items = iterable(context)
        if not isinstance(items, (list, tuple)):
            return  # null, a missing key, or not an array: nothing to repeat
        loops = context.loops
        maximum = context.limits.max_loop_iterations
        for index, item in enumerate(items, start=1):
            context.iterations += 1
            if context.iterations > maximum:
                raise RenderLimitExceeded(f"the loops run more than {maximum} times")
            loops.append((item, index))
            body(context)
            loops.pop()

    return run


def _dynamic(node: ast.DynamicContent, depth: int) -> Runner:
    evaluate = _evaluator(node.expression)

    def run(context: _Context) -> None:
        source = evaluate(context)
        if type(source) is not str or not source:
            return
        chunk = _compile_chunk(source)
        if chunk is None:
            return  # not a valid template: SparkPost renders nothing either way, and a send must not fail on data
        start = context.depth + depth + 1
        deepest = max(start + chunk.block_depth, chunk.expression_depth)
        if deepest > context.limits.max_depth:
            raise RenderLimitExceeded(f"dynamic content nests deeper than {context.limits.max_depth} levels")
        outer_loops, outer_depth = context.loops, context.depth
        context.loops, context.depth = [], start
        chunk.run(context)
        context.loops, context.depth = outer_loops, outer_depth

    return run


@lru_cache(maxsize=256)
def _compile_chunk(source: str) -> Program | None:
    """Dynamic content is data, so the same chunk comes back for every recipient; compile it once."""
    try:
        return Program(parse(source))
    except TemplateSyntaxError:
        return None
