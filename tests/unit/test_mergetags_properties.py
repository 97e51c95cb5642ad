"""Properties of the merge-tag engine that must hold for every input: rendering is total over JSON-like data,
escaping is complete and reversible, compiling fails only with ``TemplateSyntaxError``, raw output is the value.
"""

from __future__ import annotations

import html
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.templates.mergetags import Limits, RenderLimitExceeded, TemplateSyntaxError, compile_template, render

NAMES = ["a", "b", "c", "items", "user", "n", "s"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from([*NAMES, "x", "1"]), inner, max_size=4),
    max_leaves=20,
)
json_data = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=len(NAMES))

# Small limits keep every example fast; hitting them is an allowed outcome.
SMALL = Limits(max_output_chars=20_000, max_loop_iterations=200, max_depth=32)


def _expressions(loop_depth: int) -> st.SearchStrategy[str]:
    """Source text of valid expressions, using loop variables only where ``loop_depth`` loops enclose them."""
    atoms = [
        st.sampled_from(NAMES),
        st.sampled_from(["1", "0", "2.5", "-3", "'x'", '"<&>"', "true", "false", "nil"]),
    ]
    if loop_depth:
        atoms.append(st.sampled_from(["loop_var", "loop_index", "loop_var.a", "loop_var[1]"]))
    atom = st.one_of(*atoms)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        operators = ["or", "and", "==", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%"]
        return st.one_of(
            st.tuples(inner, st.sampled_from(operators), inner).map(" ".join),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"not {e}"),
            st.sampled_from(NAMES).map(lambda n: f"#{n}"),
            inner.map(lambda e: f"empty({e})"),
            st.tuples(st.sampled_from(NAMES), inner).map(lambda p: f"{p[0]}[{p[1]}]"),
            st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)).map(".".join),
        )

    return st.recursive(atom, extend, max_leaves=8)


def _templates(loop_depth: int = 0, block_depth: int = 0) -> st.SearchStrategy[str]:
    expression = _expressions(loop_depth)
    leaves = st.one_of(
        st.text(alphabet="ab <>&\"'\n\t}", max_size=8),
        expression.map(lambda e: f"{{{{ {e} }}}}"),
        expression.map(lambda e: f"{{{{{{{e}}}}}}}"),
        st.just("https://example.com/?q="),
    )
    if block_depth >= 3:
        return st.lists(leaves, max_size=4).map("".join)
    body = st.deferred(lambda: _templates(loop_depth, block_depth + 1))
    inner_loop = st.deferred(lambda: _templates(loop_depth + 1, block_depth + 1))
    blocks = st.one_of(
        st.tuples(expression, body, st.lists(st.tuples(expression, body), max_size=2), st.none() | body).map(
            lambda p: (
                f"{{{{if {p[0]}}}}}\n{p[1]}"
                + "".join(f"{{{{elseif {c}}}}}{b}" for c, b in p[2])
                + (f"{{{{else}}}}{p[3]}" if p[3] is not None else "")
                + "{{end}}\n"
            )
        ),
        st.tuples(st.sampled_from([*NAMES, *(["loop_var", "loop_var.a"] if loop_depth else [])]), inner_loop).map(
            lambda p: f"  {{{{each {p[0]}}}}}\n{p[1]}{{{{end}}}}"
        ),
    )
    return st.lists(leaves | blocks, max_size=4).map("".join)


@settings(max_examples=200, deadline=None)
@given(source=_templates(), data=json_data, escape=st.booleans())
def test_a_valid_template_compiles_and_renders_any_json_data(source: str, data: dict[str, Any], escape: bool) -> None:
    template = compile_template(source)
    try:
        output = template.render(data, escape_html=escape, limits=SMALL)
    except RenderLimitExceeded:
        return
    assert isinstance(output, str)
    assert len(output) <= SMALL.max_output_chars
    template.merge_tags()


FIXED_TEMPLATES = [
    "{{a}}{{{b}}}{{ c or 'd' }}{{ a.b[1].c }}{{ a[b] }}{{#a}}{{ a + b * c / n % s }}{{ -a }}",
    "{{if a == b}}1{{elseif a < b}}2{{elseif not c}}3{{else}}4{{end}}{{ a and b or c }}",
    "{{each items}}{{loop_index}}{{loop_var}}{{loop_var.a}}{{loop_var[1]}}{{each loop_var}}{{loop_vars.items}}"
    "{{loop_var}}{{end}}{{end}}",
    "{{ empty(a) }}{{ render_dynamic_content(a) }}{{ render_dynamic_content(s.a) }}https://x/{{a}}{{user}}",
    "{{ a <= b }}{{ a >= b }}{{ a > 1 }}{{ a != 'x' }}{{ #s + 1 }}{{ items[n] }}{{ items[s] }}",
]


@settings(max_examples=200, deadline=None)
@given(data=json_data, escape=st.booleans())
def test_fixed_templates_render_any_json_data(data: dict[str, Any], escape: bool) -> None:
    for source in FIXED_TEMPLATES:
        try:
            output = compile_template(source).render(data, escape_html=escape, limits=SMALL)
        except RenderLimitExceeded:
            continue
        assert isinstance(output, str)


_ESCAPED_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt|quot|#x27);)")


@given(value=st.text())
def test_escaped_output_has_no_markup_and_unescapes_to_the_value(value: str) -> None:
    output = render("{{x}}", {"x": value})
    assert not any(char in output for char in "<>\"'")
    assert _ESCAPED_AMPERSAND.search(output) is None
    assert html.unescape(output) == value


@given(value=st.text(), escape=st.booleans())
def test_triple_braces_output_the_string_unchanged(value: str, escape: bool) -> None:
    assert render("{{{x}}}", {"x": value}, escape_html=escape) == value
    assert render("{{{ x }}}", {"x": value}, escape_html=escape) == value


@given(value=st.text())
def test_text_parts_output_the_string_unchanged(value: str) -> None:
    assert render("{{x}}", {"x": value}, escape_html=False) == value


TEMPLATE_ALPHABET = "{}{}{}()[]'\"\\.#<>=!~+-*/%,  \n\tabcdeilnorstfhwxy_019é"
TEMPLATE_WORDS = [
    "{{", "}}", "{{{", "}}}", "if ", "elseif ", "else", "end", "each ", "then", "not ", " and ", " or ", "loop_var",
    "loop_vars.", "loop_index", "empty(", "render_dynamic_content(", "opening_double_curly()", "nil", "true", "'",
    '"', "1", "2.5e3", "#", "[", "]", ".", "(", ")", "==", "<=", "\n", " ", "a", "items", "https://",
]  # fmt: skip
arbitrary_sources = (
    st.text()
    | st.text(alphabet=TEMPLATE_ALPHABET)
    | st.lists(st.sampled_from(TEMPLATE_WORDS), max_size=30).map("".join)
)


@settings(max_examples=300, deadline=None)
@given(source=arbitrary_sources, data=json_data)
def test_compiling_any_text_fails_only_with_a_syntax_error(source: str, data: dict[str, Any]) -> None:
    try:
        template = compile_template(source)
    except TemplateSyntaxError as error:
        assert error.line >= 1 and error.column >= 1
        assert error.line <= source.count("\n") + 1
        assert str(error) == f"{error.message} (line {error.line}, column {error.column})"
        return
    try:
        template.render(data, limits=SMALL)
    except RenderLimitExceeded:
        pass
    template.merge_tags()


@given(source=st.text().filter(lambda t: "{{" not in t), escape=st.booleans())
def test_text_without_tags_renders_as_itself(source: str, escape: bool) -> None:
    assert render(source, {}, escape_html=escape) == source
