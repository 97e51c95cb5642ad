"""Turning template source into the tree of ``ast.py``, or a ``TemplateSyntaxError`` with a line and column.

Blocks are tracked with an explicit stack and expressions with a recursive-descent parser whose nesting is capped
(``MAX_COMPILE_DEPTH``), so no template can exhaust the Python stack. Operator precedence is Lua's, the language
SparkPost's is modelled on, from loosest to tightest::

    or
    and
    ==  !=  ~=  <  >  <=  >=
    +  -
    *  /  %
    not  -  #          (unary: ``not a == b`` means ``(not a) == b``)
    .key  [index]  (…)

Two passes run over the raw segments before parsing. One finds output tags that sit inside an ``http(s)://`` link
(SparkPost URL-encodes those). The other removes the whitespace a statement leaves behind: SparkPost documents
that a statement on its own line produces no blank line and that whitespace after a statement is not rendered,
and its examples keep the indentation of the line after. So the spaces and tabs after a statement are dropped,
and then one line break; when that ends the statement's line and only spaces or tabs precede it on the line,
that indentation is dropped too, so an indented statement line vanishes entirely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from postroom.templates.mergetags import ast
from postroom.templates.mergetags.lexer import (
    Segment,
    TagSegment,
    TemplateSyntaxError,
    TextSegment,
    Token,
    syntax_error,
    tokenize,
)
from postroom.templates.mergetags.limits import MAX_COMPILE_DEPTH

KEYWORDS = frozenset(
    {
        "and", "break", "do", "each", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
        "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    }
)  # fmt: skip
"""Words that can never name a variable: SparkPost's list, which is Lua's keywords plus ``each``."""

RESERVED_VARIABLES = frozenset({"address", "email", "email_id", "env_from", "return_path"})
"""Keys SparkPost fills in itself from the recipient and the sender. Templates may read them; they are never
reported as merge tags, because the sender does not supply them."""

LOOP_WORDS = frozenset({"loop_var", "loop_vars", "loop_index"})

_STATEMENTS = frozenset({"if", "elseif", "else", "end", "each"})
_COMPARISONS = frozenset({"==", "!=", "~=", "<", ">", "<=", ">="})
_CURLY_MACROS = {
    "opening_double_curly": "{{",
    "closing_double_curly": "}}",
    "opening_triple_curly": "{{{",
    "closing_triple_curly": "}}}",
}
_TAG_MACROS = frozenset({"render_dynamic_content", *_CURLY_MACROS})
_URL_SCHEMES = ("http://", "https://")
_URL_ENDS = frozenset(" \t\r\n\f\v\"'<>`()[]")


def parse(source: str) -> ast.Template:
    """Parse a whole template."""
    segments = tokenize(source)
    in_url = _tags_in_urls(segments)
    texts = _trim_statement_whitespace(segments)
    return _BlockParser(source).run(segments, texts, in_url)


# ---------------------------------------------------------------------------------------------------------------
# Pre-passes over the segments


def _is_statement(segment: Segment) -> bool:
    return (
        isinstance(segment, TagSegment)
        and bool(segment.tokens)
        and segment.tokens[0].kind == "name"
        and segment.tokens[0].value in _STATEMENTS
    )


def _tags_in_urls(segments: list[Segment]) -> set[int]:
    """Indexes of the tag segments that continue an ``http://``/``https://`` link started in the text before them.

    A link runs from its scheme to the next whitespace, quote, angle bracket or parenthesis; tags inside it are
    part of it (``https://{{host}}/p?u={{user}}``)."""
    inside: set[int] = set()
    in_url = False
    for index, segment in enumerate(segments):
        if isinstance(segment, TagSegment):
            if in_url:
                inside.add(index)
            continue
        text = segment.text
        cut = len(text)
        while cut > 0 and text[cut - 1] not in _URL_ENDS:
            cut -= 1
        tail = text[cut:].lower()
        has_scheme = any(scheme in tail for scheme in _URL_SCHEMES)
        in_url = has_scheme if cut > 0 else (in_url or has_scheme)
    return inside


def _trim_statement_whitespace(segments: list[Segment]) -> list[str]:
    """The text of every segment (``""`` for tags) after removing the whitespace statements leave behind."""
    texts = [segment.text if isinstance(segment, TextSegment) else "" for segment in segments]
    # Whether a text segment starts at the beginning of a line (a statement before it took the line break).
    starts_line = [index == 0 for index in range(len(segments))]
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if not _is_statement(segment):
            continue
        # After: spaces and tabs, and then one line break.
        if index == last:
            line_ends = True
        elif isinstance(segments[index + 1], TextSegment):
            after = texts[index + 1]
            j = 0
            while j < len(after) and after[j] in " \t":
                j += 1
            if after.startswith("\r\n", j):
                j += 2
                line_ends = True
            elif after.startswith("\n", j):
                j += 1
                line_ends = True
            else:
                line_ends = j == len(after) and index + 1 == last
            texts[index + 1] = after[j:]
            starts_line[index + 1] = line_ends
        else:
            line_ends = False
        # Before: the indentation, when the statement is alone on its line.
        if line_ends and index > 0 and isinstance(segments[index - 1], TextSegment):
            before = texts[index - 1]
            newline = before.rfind("\n")
            indent = before[newline + 1 :]
            if (newline >= 0 or starts_line[index - 1]) and indent.strip(" \t") == "":
                texts[index - 1] = before[: newline + 1]
    return texts


# ---------------------------------------------------------------------------------------------------------------
# Blocks


@dataclass
class _Frame:
    kind: Literal["if", "each"]
    offset: int
    body: list[ast.Node] = field(default_factory=list)
    # if: the branches closed so far; the current condition; whether {{else}} was seen
    branches: list[tuple[ast.Expression, tuple[ast.Node, ...]]] = field(default_factory=list)
    condition: ast.Expression | None = None
    in_else: bool = False
    # each: what is iterated and the loop's name
    iterable: ast.Expression | None = None
    name: str = ""


class _BlockParser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.stack: list[_Frame] = []
        self.root: list[ast.Node] = []
        self.block_depth = 0
        self.expression_depth = 0

    def run(self, segments: list[Segment], texts: list[str], in_url: set[int]) -> ast.Template:
        for index, segment in enumerate(segments):
            if isinstance(segment, TextSegment):
                if texts[index]:
                    self._append(ast.Text(texts[index]))
            elif _is_statement(segment):
                self._statement(segment)
            else:
                self._append(self._output(segment, index in in_url))
        if self.stack:
            frame = self.stack[-1]
            raise syntax_error(self.source, frame.offset, f"'{{{{{frame.kind}}}}}' is not closed with '{{{{end}}}}'")
        return ast.Template(_merge_text(self.root), self.block_depth, self.expression_depth)

    def _append(self, node: ast.Node) -> None:
        (self.stack[-1].body if self.stack else self.root).append(node)

    def _expressions(self, segment: TagSegment, start: int) -> _ExpressionParser:
        loops = [frame.name for frame in self.stack if frame.kind == "each"]
        return _ExpressionParser(self.source, segment, start, loops)

    def _finish(self, parser: _ExpressionParser) -> None:
        self.expression_depth = max(self.expression_depth, parser.max_depth)

    def _output(self, segment: TagSegment, in_url: bool) -> ast.Node:
        tokens = segment.tokens
        if not tokens:
            raise syntax_error(self.source, segment.offset, "empty tag")
        first = tokens[0]
        if first.kind == "name" and first.value in _TAG_MACROS and len(tokens) > 1 and tokens[1].value == "(":
            return self._macro(segment, str(first.value))
        parser = self._expressions(segment, 0)
        expression = parser.expression()
        parser.expect_end()
        self._finish(parser)
        return ast.Output(expression, segment.raw, in_url and not segment.raw)

    def _macro(self, segment: TagSegment, name: str) -> ast.Node:
        parser = self._expressions(segment, 2)
        if name in _CURLY_MACROS:
            parser.expect_op(")")
            parser.expect_end()
            return ast.Text(_CURLY_MACROS[name])
        argument = parser.expression()
        parser.expect_op(")")
        parser.expect_end()
        self._finish(parser)
        return ast.DynamicContent(argument)

    def _statement(self, segment: TagSegment) -> None:
        keyword = str(segment.tokens[0].value)
        if segment.raw:
            raise syntax_error(self.source, segment.offset, f"'{keyword}' cannot be used in triple braces")
        if keyword == "if":
            condition = self._condition(segment)
            self._open(_Frame("if", segment.offset, condition=condition))
        elif keyword == "each":
            self._open(self._each(segment))
        elif keyword == "elseif":
            frame = self._current_if(segment, "elseif")
            if frame.in_else:
                raise syntax_error(self.source, segment.offset, "'{{elseif}}' cannot follow '{{else}}'")
            condition = self._condition(segment)
            assert frame.condition is not None  # set for every open if
            frame.branches.append((frame.condition, _merge_text(frame.body)))
            frame.condition, frame.body = condition, []
        elif keyword == "else":
            self._bare(segment)
            frame = self._current_if(segment, "else")
            if frame.in_else:
                raise syntax_error(self.source, segment.offset, "'{{else}}' cannot follow '{{else}}'")
            assert frame.condition is not None  # set for every open if
            frame.branches.append((frame.condition, _merge_text(frame.body)))
            frame.condition, frame.body, frame.in_else = None, [], True
        else:
            self._bare(segment)
            if not self.stack:
                raise syntax_error(self.source, segment.offset, "'{{end}}' without an open '{{if}}' or '{{each}}'")
            self._close(self.stack.pop())

    def _open(self, frame: _Frame) -> None:
        self.stack.append(frame)
        if len(self.stack) > MAX_COMPILE_DEPTH:
            raise syntax_error(
                self.source, frame.offset, f"blocks are nested too deeply (more than {MAX_COMPILE_DEPTH} levels)"
            )
        self.block_depth = max(self.block_depth, len(self.stack))

    def _close(self, frame: _Frame) -> None:
        body = _merge_text(frame.body)
        if frame.kind == "each":
            assert frame.iterable is not None  # set for every open each
            self._append(ast.Each(frame.iterable, frame.name, body))
        elif frame.in_else:
            self._append(ast.If(tuple(frame.branches), body))
        else:
            assert frame.condition is not None  # set for every if before its else
            self._append(ast.If((*frame.branches, (frame.condition, body)), ()))

    def _current_if(self, segment: TagSegment, keyword: str) -> _Frame:
        if not self.stack or self.stack[-1].kind != "if":
            raise syntax_error(self.source, segment.offset, f"'{{{{{keyword}}}}}' without an open '{{{{if}}}}'")
        return self.stack[-1]

    def _bare(self, segment: TagSegment) -> None:
        if len(segment.tokens) > 1:
            extra = segment.tokens[1]
            keyword = segment.tokens[0].value
            raise syntax_error(self.source, extra.offset, f"unexpected {_describe(extra)} after '{keyword}'")

    def _condition(self, segment: TagSegment) -> ast.Expression:
        parser = self._expressions(segment, 1)
        condition = parser.expression()
        parser.accept_name("then")
        parser.expect_end()
        self._finish(parser)
        return condition

    def _each(self, segment: TagSegment) -> _Frame:
        parser = self._expressions(segment, 1)
        start = parser.peek()
        iterable = parser.expression()
        parser.expect_end()
        self._finish(parser)
        name = _loop_name(iterable, [f.name for f in self.stack if f.kind == "each"])
        if name is None:
            offset = start.offset if start is not None else segment.offset
            raise syntax_error(self.source, offset, "'{{each}}' needs a variable holding an array")
        return _Frame("each", segment.offset, iterable=iterable, name=name)


def _loop_name(iterable: ast.Expression, loops: list[str]) -> str | None:
    """The name ``loop_vars.<name>`` uses for a loop over ``iterable``: its last key (SparkPost: "the name of the
    array"). ``None`` when ``iterable`` is not a variable path."""
    base, steps = (iterable.base, iterable.steps) if isinstance(iterable, ast.Path) else (iterable, ())
    for step in reversed(steps):
        if isinstance(step, ast.Key):
            return step.name
    if isinstance(base, ast.Variable):
        return base.name
    if isinstance(base, ast.LoopValue):
        return loops[len(loops) - 1 - base.up]
    return None


def _merge_text(nodes: list[ast.Node]) -> tuple[ast.Node, ...]:
    """The nodes with adjacent text joined, so rendering appends one string for each run of text."""
    merged: list[ast.Node] = []
    run: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Text):
            run.append(node.text)
            continue
        if run:
            merged.append(ast.Text("".join(run)))
            run = []
        merged.append(node)
    if run:
        merged.append(ast.Text("".join(run)))
    return tuple(merged)


def _describe(token: Token) -> str:
    if token.kind == "string":
        return "string"
    if token.kind == "number":
        return "number"
    return f"'{token.value}'"


# ---------------------------------------------------------------------------------------------------------------
# Expressions


class _ExpressionParser:
    """Recursive descent over one tag's tokens, from ``start``."""

    def __init__(self, source: str, segment: TagSegment, start: int, loops: list[str]) -> None:
        self.source = source
        self.tokens = segment.tokens
        self.position = start
        self.end_offset = segment.close_offset
        self.loops = loops
        """Names of the enclosing loops, outermost first."""
        self.depth = 0
        self.max_depth = 0

    # -- token helpers

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _advance(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _is_op(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "op" and token.value == value

    def _is_name(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "name" and token.value == value

    def _error(self, message: str, token: Token | None = None) -> TemplateSyntaxError:
        token = token if token is not None else self.peek()
        offset = token.offset if token is not None else self.end_offset
        return syntax_error(self.source, offset, message)

    def _unexpected(self, expected: str) -> TemplateSyntaxError:
        token = self.peek()
        if token is None:
            return self._error(f"expected {expected}, found the end of the tag")
        return self._error(f"expected {expected}, found {_describe(token)}")

    def expect_op(self, value: str) -> None:
        if not self._is_op(value):
            raise self._unexpected(f"'{value}'")
        self.position += 1

    def accept_name(self, value: str) -> None:
        if self._is_name(value):
            self.position += 1

    def expect_end(self) -> None:
        token = self.peek()
        if token is not None:
            raise self._error(f"unexpected {_describe(token)}")

    def _enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_COMPILE_DEPTH:
            raise self._error(f"expression is nested too deeply (more than {MAX_COMPILE_DEPTH} levels)", token)
        self.max_depth = max(self.max_depth, self.depth)

    def _leave(self) -> None:
        self.depth -= 1

    # -- grammar

    def expression(self) -> ast.Expression:
        return self._logical("or")

    def _logical(self, operator: Literal["and", "or"]) -> ast.Expression:
        operands = [self._logical("and") if operator == "or" else self._comparison()]
        while self._is_name(operator):
            self.position += 1
            operands.append(self._logical("and") if operator == "or" else self._comparison())
        return operands[0] if len(operands) == 1 else ast.Logical(operator, tuple(operands))

    def _comparison(self) -> ast.Expression:
        first = self._additive()
        rest: list[tuple[str, ast.Expression]] = []
        while (token := self.peek()) is not None and token.kind == "op" and token.value in _COMPARISONS:
            self.position += 1
            operator = "!=" if token.value == "~=" else str(token.value)
            rest.append((operator, self._additive()))
        return ast.Chain(first, tuple(rest)) if rest else first

    def _additive(self) -> ast.Expression:
        return self._arithmetic(("+", "-"), self._multiplicative)

    def _multiplicative(self) -> ast.Expression:
        return self._arithmetic(("*", "/", "%"), self._unary)

    def _arithmetic(self, operators: tuple[str, ...], operand: Callable[[], ast.Expression]) -> ast.Expression:
        first = operand()
        rest: list[tuple[str, ast.Expression]] = []
        while (token := self.peek()) is not None and token.kind == "op" and token.value in operators:
            self.position += 1
            rest.append((str(token.value), operand()))
        return ast.Chain(first, tuple(rest)) if rest else first

    def _unary(self) -> ast.Expression:
        token = self.peek()
        operator: Literal["not", "-", "#"]
        if token is not None and token.kind == "name" and token.value == "not":
            operator = "not"
        elif token is not None and token.kind == "op" and token.value in ("-", "#"):
            operator = "-" if token.value == "-" else "#"
        else:
            return self._postfix()
        self.position += 1
        self._enter(token)
        operand = self._unary()
        self._leave()
        if operator == "-" and isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
            return ast.Constant(-operand.value)  # type: ignore[operator]
        return ast.Unary(operator, operand)

    def _postfix(self) -> ast.Expression:
        base, can_index = self._primary()
        steps: list[ast.Key | ast.Index] = []
        while self._is_op(".") or self._is_op("["):
            if not can_index:
                raise self._error("a literal value has no keys or indexes")
            if self._advance().value == ".":
                steps.append(ast.Key(self._key_name()))
            else:
                steps.append(self._bracket())
        return ast.Path(base, tuple(steps)) if steps else base

    def _key_name(self) -> str:
        token = self.peek()
        if token is None or token.kind != "name":
            raise self._unexpected("a key name after '.'")
        if token.value in KEYWORDS:
            raise self._error(f"'{token.value}' is a reserved word; write ['{token.value}'] to use it as a key")
        self.position += 1
        return str(token.value)

    def _bracket(self) -> ast.Key | ast.Index:
        opening = self.tokens[self.position - 1]
        self._enter(opening)
        inner = self.expression()
        self.expect_op("]")
        self._leave()
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            return ast.Key(inner.value)
        return ast.Index(inner)

    def _primary(self) -> tuple[ast.Expression, bool]:
        """The expression and whether ``.key``/``[index]`` may follow it."""
        token = self.peek()
        if token is None:
            raise self._unexpected("an expression")
        if token.kind in ("number", "string"):
            self.position += 1
            return ast.Constant(token.value), False
        if token.kind == "op":
            if token.value != "(":
                raise self._unexpected("an expression")
            self.position += 1
            self._enter(token)
            inner = self.expression()
            self.expect_op(")")
            self._leave()
            return inner, True
        self.position += 1
        name = str(token.value)
        if self._is_op("("):
            return self._call(token), False
        if name in ("true", "false"):
            return ast.Constant(name == "true"), False
        if name == "nil":
            return ast.Constant(None), False
        if name in KEYWORDS:
            raise self._error(f"'{name}' is a reserved word and cannot be used as a variable", token)
        if name == "loop_var" or name == "loop_index":
            if not self.loops:
                raise self._error(f"'{name}' can only be used inside '{{{{each}}}}'", token)
            return (ast.LoopValue(0) if name == "loop_var" else ast.LoopIndex()), True
        if name == "loop_vars":
            return self._loop_vars(token), True
        return ast.Variable(name), True

    def _loop_vars(self, token: Token) -> ast.Expression:
        if self._is_op("."):
            self.position += 1
            name_token = self.peek()
            name = self._key_name()
        elif self._is_op("["):
            self.position += 1
            name_token = self.peek()
            if name_token is None or name_token.kind != "string":
                raise self._unexpected("a loop name in quotes after 'loop_vars['")
            self.position += 1
            name = str(name_token.value)
            self.expect_op("]")
        else:
            raise self._error("'loop_vars' must be followed by '.' and the name of a loop's array", token)
        for up, loop in enumerate(reversed(self.loops)):
            if loop == name:
                return ast.LoopValue(up)
        raise self._error(f"no enclosing '{{{{each}}}}' loops over '{name}'", name_token)

    def _call(self, token: Token) -> ast.Expression:
        name = str(token.value)
        if name in _TAG_MACROS:
            raise self._error(f"'{name}()' must be the only thing in its tag", token)
        if name != "empty":
            raise self._error(f"unknown macro '{name}()'", token)
        opening = self._advance()
        self._enter(opening)
        argument = self.expression()
        self.expect_op(")")
        self._leave()
        return ast.Empty(argument)
