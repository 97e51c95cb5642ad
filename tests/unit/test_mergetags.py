"""The merge-tag language: what templates render to, which ones are refused (and where), the merge tags they
report, and the limits that keep a hostile template or data set bounded.

The SparkPost examples (template-language docs) appear verbatim with their documented output.
"""

from __future__ import annotations

from typing import Any

import pytest

from postroom.templates.mergetags import (
    DEFAULT_LIMITS,
    CompiledTemplate,
    Limits,
    RenderLimitExceeded,
    TemplateSyntaxError,
    compile_template,
    render,
)
from postroom.templates.mergetags.limits import MAX_TAGS, MAX_TOKENS

CART = {"shopping_cart": [{"name": "Jacket", "price": 39.99}, {"name": "Gloves", "price": 5.00}]}
NESTED_CART = {
    "shopping_cart": [
        {"name": "Jacket", "price": 39.99, "a_nested_array": [{"key": "v2"}, {"key": "v1"}]},
        {"name": "Gloves", "price": 5.00},
    ]
}
NESTED_LOOPS = """---
{{each shopping_cart}}
Item: {{loop_vars.shopping_cart.name}}
Price: {{loop_vars.shopping_cart.price}}
This item has the following nested values:
{{each loop_vars.shopping_cart.a_nested_array}}
  Nested value: {{loop_vars.a_nested_array.key}}
{{end}}
---
{{end}}
"""
NESTED_LOOPS_OUTPUT = """---
Item: Jacket
Price: 39.99
This item has the following nested values:
  Nested value: v2
  Nested value: v1
---
Item: Gloves
Price: 5
This item has the following nested values:
---
"""
TABLE = """{{ if not empty(shopping_cart) }}
<table>
{{ each shopping_cart }}
  <tr><td>{{loop_var.name}}</td><td>${{loop_var.price}}</td></tr>
{{ end }}
</table>
{{ else }}
<b>Buy something!</b>
{{ end }}
"""
TABLE_OUTPUT = """<table>
  <tr><td>Jacket</td><td>$39.99</td></tr>
  <tr><td>Gloves</td><td>$5</td></tr>
</table>
"""

# (template, data, expected output) rendered for an HTML part (escape_html=True)
HTML_CASES = [
    # escaping and raw output
    pytest.param("{{x}}", {"x": "<a href=\"x\">'&'</a>"}, "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;", id="double-braces-escape-html"),
    pytest.param("{{{x}}}", {"x": "<b>Hello, World</b>"}, "<b>Hello, World</b>", id="triple-braces-are-raw"),
    pytest.param("{{ value }}|{{value}}|{{  value   }}", {"value": "Hello 👋"}, "Hello 👋|Hello 👋|Hello 👋", id="whitespace-inside-braces-is-ignored"),
    pytest.param("{{\n  value\n}}", {"value": "v"}, "v", id="line-breaks-inside-a-tag"),
    pytest.param("<p>&amp; {{x}}</p>", {"x": "a&b"}, "<p>&amp; a&amp;b</p>", id="template-text-is-never-escaped"),
    pytest.param("{{ x or '<i>' }}", {}, "&lt;i&gt;", id="literal-default-is-escaped-too"),
    pytest.param("{{x}}", {"x": "&amp;"}, "&amp;amp;", id="entities-in-data-are-escaped-again"),
    # links (SparkPost URL-encodes values inside http(s) links)
    pytest.param('<a href="https://company.com/dailydeals?user={{user}}&offercode={{offercode}}">Go!</a>', {"user": "john", "offercode": "Daily Deal!"}, '<a href="https://company.com/dailydeals?user=john&offercode=Daily%20Deal%21">Go!</a>', id="values-in-links-are-url-encoded"),
    pytest.param('<a href="https://{{{link}}}">x</a>', {"link": "www.company.com/groups"}, '<a href="https://www.company.com/groups">x</a>', id="raw-values-in-links-are-not-encoded"),
    pytest.param("https://{{host}}/p?u={{user}}", {"host": "a.example", "user": "a b"}, "https://a.example/p?u=a%20b", id="link-continues-across-tags"),
    pytest.param('<a href="https://x.example/">{{name}}</a>', {"name": "A&B <C>"}, '<a href="https://x.example/">A&amp;B &lt;C&gt;</a>', id="link-ends-at-quote"),
    pytest.param("See https://x.example/ now, {{name}}", {"name": "A B"}, "See https://x.example/ now, A B", id="link-ends-at-space"),
    # missing values
    pytest.param("* {{name}}\n* {{age}}\n* {{job}}\n* {{location}}", {"name": "Jane", "age": None, "job": "Software Engineer"}, "* Jane\n* \n* Software Engineer\n* ", id="missing-and-null-render-empty"),
    pytest.param("[{{a.b.c}}]", {"a": {"b": None}}, "[]", id="missing-nested-path-renders-empty"),
    pytest.param("[{{a.b}}]", {"a": "text"}, "[]", id="key-of-a-string-renders-empty"),
    pytest.param("[{{a.b}}]", {"a": [1, 2]}, "[]", id="key-of-an-array-renders-empty"),
    # defaults
    pytest.param("Hello {{ name or 'Customer' }}", {"name": None}, "Hello Customer", id="or-default-for-null"),
    pytest.param("Hello {{ name or 'Customer' }}", {}, "Hello Customer", id="or-default-for-missing"),
    pytest.param("Hello {{ name or 'Customer' }}", {"name": "Ann"}, "Hello Ann", id="or-keeps-present-value"),
    pytest.param("Hello {{ name or \"Customer\" }}", {"name": False}, "Hello Customer", id="or-default-for-false"),
    pytest.param("[{{ name or 'x' }}]", {"name": ""}, "[]", id="or-keeps-empty-string-as-lua-does"),
    pytest.param("[{{ n or 5 }}]", {"n": 0}, "[0]", id="or-keeps-zero-as-lua-does"),
    pytest.param("{{ a or b or 'c' }}", {"b": "B"}, "B", id="or-chain-takes-first-present"),
    pytest.param("{{ a and b }}", {"a": 1, "b": "B"}, "B", id="and-returns-the-deciding-value"),
    # paths
    pytest.param("Street: {{address.street}}\nCity: {{address['city']}}\nDynamic: {{address[part]}}", {"address": {"street": "Howard Street", "city": "San Francisco"}, "part": "street"}, "Street: Howard Street\nCity: San Francisco\nDynamic: Howard Street", id="dot-bracket-and-dynamic-paths"),
    pytest.param("{{ children[1] }} and {{ children[2] }}", {"children": ["Rusty", "Audrey"]}, "Rusty and Audrey", id="array-indexes-start-at-1"),
    pytest.param("[{{ children[0] }}][{{ children[3] }}][{{ children[-1] }}]", {"children": ["Rusty", "Audrey"]}, "[][][]", id="index-0-negative-or-past-the-end-is-empty"),
    pytest.param("{{ shopping_cart[1].name }}", CART, "Jacket", id="index-then-key"),
    pytest.param("{{ items[4 / 2] }}", {"items": ["a", "b"]}, "b", id="integral-float-index"),
    pytest.param("{{ items[i] }}", {"items": ["a", "b"], "i": 2}, "b", id="index-from-variable"),
    pytest.param("[{{ obj[1] }}]", {"obj": {"1": "one"}}, "[]", id="number-index-on-object-is-empty"),
    pytest.param("{{ m['first-name'] }}", {"m": {"first-name": "Ann"}}, "Ann", id="bracket-key-that-is-not-a-name"),
    # how values print
    pytest.param("{{n}}", {"n": 40}, "40", id="int"),
    pytest.param("{{n}}", {"n": 5.0}, "5", id="integral-float-prints-as-integer"),
    pytest.param("{{n}}", {"n": 39.99}, "39.99", id="float"),
    pytest.param("{{n}}", {"n": 1e20}, "1e+20", id="large-float"),
    pytest.param("{{t}} {{f}}", {"t": True, "f": False}, "true false", id="booleans"),
    pytest.param("[{{l}}][{{o}}]", {"l": [1], "o": {"a": 1}}, "[][]", id="arrays-and-objects-print-nothing"),
    pytest.param("{{ true }}[{{ nil }}]{{ 'x' }}{{ 2 }}", {}, "true[]x2", id="literals"),
    pytest.param("{{ 'it\\'s' }}", {}, "it&#x27;s", id="string-escape-sequence"),
    pytest.param("{{x}}", {"x": "Zoë — 日本"}, "Zoë — 日本", id="unicode-passes-through"),
    # conditionals
    pytest.param("{{if signed_up}}Welcome{{end}}", {"signed_up": True}, "Welcome", id="if-true"),
    pytest.param("{{if signed_up then}}Welcome{{else}}Sign up{{end}}", {"signed_up": False}, "Sign up", id="if-then-else"),
    pytest.param("{{if a}}A{{elseif b}}B{{else}}C{{end}}", {"b": 1}, "B", id="elseif-chain-second"),
    pytest.param("{{if a}}A{{elseif b}}B{{elseif c}}C{{else}}D{{end}}", {}, "D", id="elseif-chain-falls-to-else"),
    pytest.param("{{if a}}{{if b}}ab{{else}}a{{end}}{{else}}-{{end}}", {"a": 1}, "a", id="nested-ifs"),
    pytest.param("{{if n}}yes{{end}}|{{if s}}yes{{end}}|{{if l}}yes{{end}}", {"n": 0, "s": "", "l": []}, "yes|yes|yes", id="zero-empty-string-and-empty-array-are-true"),
    pytest.param("{{if x}}yes{{else}}no{{end}}", {"x": None}, "no", id="null-is-false"),
    pytest.param("Start of template\n{{ if state == \"MD\" }}\nMaryland\n{{ end }}\nEnd of template", {"state": "MD"}, "Start of template\nMaryland\nEnd of template", id="statements-leave-no-blank-lines"),
    pytest.param("<ul>\n  {{if a}}\n  <li>A</li>\n  {{end}}\n</ul>", {"a": 1}, "<ul>\n  <li>A</li>\n</ul>", id="indented-statement-lines-vanish"),
    pytest.param("Hello {{if vip}}dear {{end}}friend", {"vip": True}, "Hello dear friend", id="inline-statement"),
    pytest.param("Your ice cream is {{if flavor == \"strawberry\"}} pink {{else}} cream{{end}}-colored.", {"flavor": "strawberry"}, "Your ice cream is pink -colored.", id="spaces-after-a-statement-vanish"),
    pytest.param("Your ice cream is {{if flavor == \"strawberry\"}} pink {{else}} cream{{end}}-colored.", {}, "Your ice cream is cream-colored.", id="spaces-after-else-vanish"),
    pytest.param("{{if a}}\n\nA{{end}}  \n\nB", {"a": 1}, "\nA\nB", id="only-one-line-break-after-a-statement-vanishes"),
    pytest.param("a\r\n{{if x}}\r\nb\r\n{{end}}\r\nc", {"x": 1}, "a\r\nb\r\nc", id="crlf-lines"),
    # comparisons
    pytest.param("{{if age > 30 and address.state == \"MD\"}}yes{{end}}", {"age": 31, "address": {"state": "MD"}}, "yes", id="comparison-and-path"),
    pytest.param("{{ n == 1 }} {{ n == 1.0 }} {{ n == '1' }}", {"n": 1}, "true true false", id="equality-is-type-strict"),
    pytest.param("{{ n != 2 }} {{ n ~= 1 }}", {"n": 1}, "true false", id="not-equal-both-spellings"),
    pytest.param("{{ a < b }} {{ a >= 2.5 }} {{ b <= 3 }}", {"a": 2.5, "b": 3}, "true true true", id="ordering-int-and-float"),
    pytest.param("{{ 'apple' < 'banana' }} {{ 'b' > 'a' }}", {}, "true true", id="ordering-strings"),
    pytest.param("{{ n < 'x' }} {{ n > 'x' }} {{ m < 1 }} {{ l > 0 }}", {"n": 1, "l": [1]}, "false false false false", id="incomparable-orderings-are-false"),
    pytest.param("{{ m == nil }} {{ m == 0 }} {{ t == true }}", {"t": True}, "true false true", id="null-and-boolean-equality"),
    pytest.param("{{ t == 1 }}", {"t": True}, "false", id="true-is-not-one"),
    # logic and precedence
    pytest.param("{{ a or b and c }}", {"a": "A", "b": False, "c": "C"}, "A", id="and-binds-tighter-than-or"),
    pytest.param("{{ not a == b }}|{{ not (a == b) }}", {"a": 1, "b": 2}, "false|true", id="not-binds-tightest-as-in-lua"),
    pytest.param("{{if not signed_up}}Sign up!{{end}}", {}, "Sign up!", id="not-missing-is-true"),
    pytest.param("{{ (a or b) == 'B' }}", {"b": "B"}, "true", id="parentheses"),
    # length and empty()
    pytest.param("Number of states: {{#states}}", {"states": ["MD", "CA"]}, "Number of states: 2", id="length-operator"),
    pytest.param("{{if #states > 1}}many{{end}}", {"states": ["MD", "CA"]}, "many", id="length-in-condition"),
    pytest.param("{{#s}}[{{#m}}][{{#o}}]", {"s": "héllo", "o": {"a": 1}}, "5[][]", id="length-of-string-missing-object"),
    pytest.param("{{ empty(a) }} {{ empty(b) }} {{ empty(c) }} {{ empty(d) }}", {"a": [], "b": [1], "d": 0}, "true false true false", id="empty-macro"),
    # arithmetic
    pytest.param("{{ a + b * c }} {{ (a + b) * c }}", {"a": 1, "b": 2, "c": 3}, "7 9", id="arithmetic-precedence"),
    pytest.param("{{ 7 / 2 }} {{ 6 / 2 }} {{ 7 % 3 }} {{ -7 % 3 }}", {}, "3.5 3 1 2", id="division-and-modulo"),
    pytest.param("{{ -n }} {{ 10 - -n }} {{ 2 - 3 - 4 }}", {"n": 4}, "-4 14 -5", id="unary-minus-and-left-association"),
    pytest.param("{{ q + 1 }} {{ q * '2' }}", {"q": "10"}, "11 20", id="numeric-strings-coerce"),
    pytest.param("[{{ s + 1 }}][{{ t + 1 }}][{{ m + 1 }}][{{ l * 2 }}]", {"s": "ten", "t": True, "l": [1]}, "[][][][]", id="non-numbers-give-empty"),
    pytest.param("[{{ 1 / 0 }}][{{ 1 % 0 }}][{{ 1.5 % 0 }}]", {}, "[][][]", id="division-by-zero-is-empty"),
    pytest.param("{{ big * 4 }}", {"big": 2**62}, "1.844674407371e+19", id="integers-past-64-bits-become-floats"),
    pytest.param("{{ price * qty }}", {"price": 0.1, "qty": 3}, "0.3", id="floats-print-like-lua"),
    # loops
    pytest.param("{{ each children }}\nYou have a child named {{loop_var}}\n{{ end }}\n", {"children": ["Rusty", "Audrey"]}, "You have a child named Rusty\nYou have a child named Audrey\n", id="each-over-strings"),
    pytest.param("Your shopping cart has items in it:\n{{each shopping_cart}}\nItem: {{loop_var.name}}, Price: {{loop_var.price}}\n{{end}}\n", CART, "Your shopping cart has items in it:\nItem: Jacket, Price: 39.99\nItem: Gloves, Price: 5\n", id="each-over-objects"),
    pytest.param("{{each l}}{{loop_index}}:{{loop_var}} {{end}}", {"l": ["a", "b", "c"]}, "1:a 2:b 3:c ", id="loop-index-counts-from-1"),
    pytest.param("{{each l}}{{ l[loop_index] == loop_var }}{{end}}", {"l": ["a", "b"]}, "truetrue", id="loop-index-addresses-the-array"),
    pytest.param(NESTED_LOOPS, NESTED_CART, NESTED_LOOPS_OUTPUT, id="nested-loops-with-loop-vars"),
    pytest.param("{{each rows}}{{each loop_var}}{{loop_index}}{{loop_var}};{{end}}|{{end}}", {"rows": [["a", "b"], ["c"]]}, "1a;2b;|1c;|", id="nested-loop-var-is-innermost"),
    pytest.param("[{{each l}}x{{end}}]", {"l": []}, "[]", id="each-over-empty-array"),
    pytest.param("[{{each l}}x{{end}}][{{each m}}x{{end}}]", {"l": None}, "[][]", id="each-over-null-or-missing"),
    pytest.param("[{{each s}}x{{end}}][{{each o}}x{{end}}][{{each n}}x{{end}}]", {"s": "abc", "o": {"a": 1}, "n": 3}, "[][][]", id="each-over-non-array"),
    pytest.param("{{each l}}{{if loop_var.on}}{{loop_var.n}}{{end}}{{end}}", {"l": [{"on": True, "n": 1}, {"n": 2}, {"on": 1, "n": 3}]}, "13", id="condition-on-loop-var"),
    pytest.param("{{each l}}{{greeting}} {{loop_var}};{{end}}", {"l": ["a", "b"], "greeting": "hi"}, "hi a;hi b;", id="top-level-data-inside-loop"),
    pytest.param("{{each order.items}}{{loop_var}}{{end}}", {"order": {"items": [1, 2]}}, "12", id="each-over-a-path"),
    pytest.param(TABLE, CART, TABLE_OUTPUT, id="empty-macro-guards-a-table"),
    pytest.param(TABLE, {"shopping_cart": []}, "<b>Buy something!</b>\n", id="empty-macro-else-branch"),
    # reserved variables and macros
    pytest.param("{{address.email}} {{email}}", {"address": {"email": "a@example.com"}, "email": "a@example.com"}, "a@example.com a@example.com", id="reserved-variables-can-be-read"),
    pytest.param("{{ opening_double_curly() }}x{{ closing_double_curly() }} {{opening_triple_curly()}}{{closing_triple_curly()}}", {}, "{{x}} {{{}}}", id="curly-brace-macros"),
    pytest.param("<p>{{ render_dynamic_content(dynamic_html.chunk) }}</p>", {"dynamic_html": {"chunk": "<b>{{name}}</b>"}, "name": "<foo>"}, "<p><b>&lt;foo&gt;</b></p>", id="dynamic-content-rendered-unescaped"),
    pytest.param("{{each offers}}<li>{{render_dynamic_content(dynamic_html[loop_var])}}</li>{{end}}", {"offers": ["o1", "o3"], "name": "John", "dynamic_html": {"o1": "one {{name}}", "o2": "two", "o3": "three"}}, "<li>one John</li><li>three</li>", id="dynamic-content-chosen-in-a-loop"),
    pytest.param("[{{ render_dynamic_content(d) }}][{{ render_dynamic_content(n) }}]", {"d": "{{if}}", "n": 5}, "[][]", id="invalid-dynamic-content-renders-nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "data", "expected"), HTML_CASES)
def test_renders_html_parts(source: str, data: dict[str, Any], expected: str) -> None:
    assert render(source, data) == expected


# (template, data, expected) rendered for a text part or subject (escape_html=False)
TEXT_CASES = [
    pytest.param("{{x}}", {"x": "<b>&'\"</b>"}, "<b>&'\"</b>", id="text-parts-are-not-escaped"),
    pytest.param("{{{x}}}", {"x": "<b>"}, "<b>", id="text-parts-raw"),
    pytest.param("Visit https://x.example/?u={{u}}", {"u": "a&b c"}, "Visit https://x.example/?u=a%26b%20c", id="text-parts-encode-links"),
    pytest.param("Order {{ id or 'n/a' }}", {}, "Order n/a", id="text-parts-defaults"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "data", "expected"), TEXT_CASES)
def test_renders_text_parts_and_subjects(source: str, data: dict[str, Any], expected: str) -> None:
    assert render(source, data, escape_html=False) == expected


def test_a_compiled_template_renders_each_recipient_independently() -> None:
    template = compile_template("Hi {{name}}{{each l}}{{loop_var}}{{end}}")
    assert isinstance(template, CompiledTemplate)
    assert template.source == "Hi {{name}}{{each l}}{{loop_var}}{{end}}"
    assert template.render({"name": "A", "l": [1]}) == "Hi A1"
    assert template.render({"name": "B"}) == "Hi B"
    assert template.render({"name": "<C>"}, escape_html=False) == "Hi <C>"


def test_rendering_ignores_python_objects_in_data() -> None:
    class Sneaky:
        def __str__(self) -> str:
            raise AssertionError("str() was called")

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"attribute {name} was read")

    data = {"o": Sneaky(), "l": [Sneaky()]}
    assert render("[{{o}}][{{o.x}}][{{o['x']}}][{{#o}}][{{each l}}{{loop_var.y}}{{end}}][{{o == o}}]", data) == (
        "[][][][][][true]"
    )


# (template, message, line, column)
ERROR_CASES = [
    pytest.param("a\n{{if x}}b", "'{{if}}' is not closed with '{{end}}'", 2, 1, id="unclosed-if"),
    pytest.param("{{if a}}{{end}}\n  {{each l}}x", "'{{each}}' is not closed with '{{end}}'", 2, 3, id="unclosed-each"),
    pytest.param("{{if a}}\n{{if b}}x{{end}}", "'{{if}}' is not closed with '{{end}}'", 1, 1, id="unclosed-outer-if"),
    pytest.param("x {{end}}", "'{{end}}' without an open '{{if}}' or '{{each}}'", 1, 3, id="stray-end"),
    pytest.param("{{if a}}{{end}}{{end}}", "'{{end}}' without an open '{{if}}' or '{{each}}'", 1, 16, id="one-end-too-many"),
    pytest.param("{{else}}", "'{{else}}' without an open '{{if}}'", 1, 1, id="stray-else"),
    pytest.param("{{each l}}{{elseif x}}{{end}}", "'{{elseif}}' without an open '{{if}}'", 1, 11, id="elseif-in-each"),
    pytest.param("{{if a}}\n{{else}}\n{{elseif b}}\n{{end}}", "'{{elseif}}' cannot follow '{{else}}'", 3, 1, id="elseif-after-else"),
    pytest.param("{{if a}}{{else}}{{else}}{{end}}", "'{{else}}' cannot follow '{{else}}'", 1, 17, id="else-after-else"),
    pytest.param("{{if}}{{end}}", "expected an expression, found the end of the tag", 1, 5, id="if-without-condition"),
    pytest.param("{{end x}}", "unexpected 'x' after 'end'", 1, 7, id="end-with-extra"),
    pytest.param("line 1\nline 2\n  {{ a + }}", "expected an expression, found the end of the tag", 3, 10, id="incomplete-expression"),
    pytest.param("{{ a b }}", "unexpected 'b'", 1, 6, id="two-values"),
    pytest.param("{{ (a }}", "expected ')', found the end of the tag", 1, 7, id="unclosed-parenthesis"),
    pytest.param("{{ a[1 }}", "expected ']', found the end of the tag", 1, 8, id="unclosed-bracket"),
    pytest.param("{{ while }}", "'while' is a reserved word and cannot be used as a variable", 1, 4, id="reserved-word-as-variable"),
    pytest.param("{{if x == end}}{{end}}", "'end' is a reserved word and cannot be used as a variable", 1, 11, id="reserved-word-in-condition"),
    pytest.param("{{ a.end }}", "'end' is a reserved word; write ['end'] to use it as a key", 1, 6, id="reserved-word-after-dot"),
    pytest.param("{{ a.1 }}", "expected a key name after '.', found number", 1, 6, id="number-after-dot"),
    pytest.param("Hello {{name", "'{{' is not closed with '}}'", 1, 7, id="unterminated-tag"),
    pytest.param("Hello {{name <b>{{x}}", "'{{' is not closed with '}}'", 1, 7, id="unterminated-tag-before-next"),
    pytest.param("{{{x", "'{{{' is not closed with '}}}'", 1, 1, id="unterminated-raw-tag"),
    pytest.param("{{{x}} }", "'{{{' must be closed with '}}}'", 1, 5, id="raw-tag-closed-with-two"),
    pytest.param("{{ 'abc }}", "string is not closed", 1, 4, id="unterminated-string"),
    pytest.param("{{ 'a\\qb' }}", "unknown escape sequence in string", 1, 6, id="unknown-escape"),
    pytest.param("{{ }}", "empty tag", 1, 1, id="empty-tag"),
    pytest.param("{{ a = 1 }}", "unexpected '=' (use '==' to compare)", 1, 6, id="single-equals"),
    pytest.param("{{ a ! b }}", "unexpected '!' (use 'not' or '!=')", 1, 6, id="bang"),
    pytest.param("{{ a @ b }}", "unexpected character '@'", 1, 6, id="unknown-character"),
    pytest.param("{{ é }}", "unexpected character 'é'", 1, 4, id="non-ascii-name"),
    pytest.param("{{ 1abc }}", "malformed number", 1, 4, id="malformed-number"),
    pytest.param("{{ 1234567890123456789 }}", "number is too large", 1, 4, id="number-too-large"),
    pytest.param("{{ 'a'.b }}", "a literal value has no keys or indexes", 1, 7, id="key-of-literal"),
    pytest.param("{{ loop_var }}", "'loop_var' can only be used inside '{{each}}'", 1, 4, id="loop-var-outside-each"),
    pytest.param("{{ loop_index }}", "'loop_index' can only be used inside '{{each}}'", 1, 4, id="loop-index-outside-each"),
    pytest.param("{{each a}}{{ loop_vars.b }}{{end}}", "no enclosing '{{each}}' loops over 'b'", 1, 24, id="unknown-loop-name"),
    pytest.param("{{each a}}{{ loop_vars }}{{end}}", "'loop_vars' must be followed by '.' and the name of a loop's array", 1, 14, id="bare-loop-vars"),
    pytest.param("{{each 'abc'}}{{end}}", "'{{each}}' needs a variable holding an array", 1, 8, id="each-over-literal"),
    pytest.param("{{each}}{{end}}", "expected an expression, found the end of the tag", 1, 7, id="each-without-array"),
    pytest.param("{{ upper(x) }}", "unknown macro 'upper()'", 1, 4, id="unknown-macro"),
    pytest.param("{{ x or render_dynamic_content(y) }}", "'render_dynamic_content()' must be the only thing in its tag", 1, 9, id="tag-macro-inside-expression"),
    pytest.param("{{ opening_double_curly(x) }}", "expected ')', found 'x'", 1, 25, id="curly-macro-with-argument"),
    pytest.param("{{{if x}}}{{end}}", "'if' cannot be used in triple braces", 1, 1, id="statement-in-triple-braces"),
    pytest.param("{{ a }}}", "", 0, 0, id="extra-closing-brace-is-text"),  # not an error: see the test body
]  # fmt: skip


@pytest.mark.parametrize(("source", "message", "line", "column"), ERROR_CASES)
def test_syntax_errors_name_the_offending_token(source: str, message: str, line: int, column: int) -> None:
    if not message:
        assert render(source, {"a": "A"}) == "A}"
        return
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    error = caught.value
    assert (error.message, error.line, error.column) == (message, line, column)
    assert str(error) == f"{message} (line {line}, column {column})"
    assert isinstance(error, ValueError)


def test_blocks_nested_too_deeply_are_refused_at_compile_time() -> None:
    depth = DEFAULT_LIMITS.max_depth
    compile_template("{{if a}}" * depth + "x" + "{{end}}" * depth)
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template("{{if a}}\n" * (depth + 1) + "{{end}}" * (depth + 1))
    assert (caught.value.line, caught.value.column) == (depth + 1, 1)
    assert "nested too deeply" in caught.value.message


def test_expressions_nested_too_deeply_are_refused_at_compile_time() -> None:
    depth = DEFAULT_LIMITS.max_depth
    assert render("{{ " + "(" * depth + "1" + ")" * depth + " }}", {}) == "1"
    with pytest.raises(TemplateSyntaxError, match="nested too deeply"):
        compile_template("{{ " + "(" * 10_000 + "1" + ")" * 10_000 + " }}")
    with pytest.raises(TemplateSyntaxError, match="nested too deeply"):
        compile_template("{{ " + "not " * 10_000 + "a }}")
    with pytest.raises(TemplateSyntaxError, match="nested too deeply"):
        compile_template("{{ a" + "[b" * 10_000 + "]" * 10_000 + " }}")


def test_templates_with_too_many_tags_or_tokens_are_refused() -> None:
    compile_template("{{a}}" * MAX_TAGS)
    with pytest.raises(TemplateSyntaxError, match=f"too many tags \\(more than {MAX_TAGS}\\)") as caught:
        compile_template("{{a}}\n" * (MAX_TAGS + 1))
    assert (caught.value.line, caught.value.column) == (MAX_TAGS + 1, 1)
    with pytest.raises(TemplateSyntaxError, match=f"too many tokens in tags \\(more than {MAX_TOKENS}\\)"):
        compile_template("{{ " + "a + " * MAX_TOKENS + "a }}")


def test_long_flat_expressions_and_paths_are_fine() -> None:
    # Chains and paths are flat in the tree, so their length is no nesting.
    terms = 5_000
    assert render("{{ " + " + ".join(["1"] * terms) + " }}", {}) == str(terms)
    assert render("{{ " + " or ".join(["m"] * terms) + " or 'd' }}", {}) == "d"
    assert render("{{ a" + ".a" * terms + " }}", {"a": {}}) == ""


# (template, expected merge tags)
MERGE_TAG_CASES = [
    pytest.param("Hi {{first_name}} {{last_name}}", [{"key": "first_name", "required": True}, {"key": "last_name", "required": True}], id="plain-tags-are-required"),
    pytest.param("{{{raw_html}}}", [{"key": "raw_html", "required": True}], id="raw-tags-count"),
    pytest.param("{{ first_name or 'Customer' }}", [{"key": "first_name", "required": False}], id="or-default-is-optional"),
    pytest.param("{{ nick or first_name }}", [{"key": "nick", "required": False}, {"key": "first_name", "required": False}], id="both-sides-of-or-are-optional"),
    pytest.param("{{ a or 'x' }} {{ a }}", [{"key": "a", "required": True}], id="required-anywhere-wins"),
    pytest.param("{{user.name}} {{user.email}}", [{"key": "user.name", "required": True}, {"key": "user.email", "required": True}], id="dotted-paths-keep-the-full-path"),
    pytest.param("{{place['city']}} {{items[1].name}}", [{"key": "place.city", "required": True}, {"key": "items", "required": True}], id="bracket-key-joins-index-stops"),
    pytest.param("{{ m[part] }}", [{"key": "m", "required": True}, {"key": "part", "required": True}], id="computed-index-names-both"),
    pytest.param("{{if vip}}{{discount}}{{end}}", [{"key": "vip", "required": False}, {"key": "discount", "required": True}], id="condition-only-is-optional"),
    pytest.param("{{if a > 1 and b == 'x'}}{{elseif not c}}{{end}}", [{"key": "a", "required": False}, {"key": "b", "required": False}, {"key": "c", "required": False}], id="every-condition-variable"),
    pytest.param("{{if name}}{{name}}{{end}}", [{"key": "name", "required": True}], id="condition-then-output"),
    pytest.param("{{if not empty(items)}}{{#items}}{{end}}", [{"key": "items", "required": True}], id="empty-macro-then-length"),
    pytest.param("{{each items}}{{loop_var.name}} {{loop_var.price}} {{loop_var.name}}{{end}}", [{"key": "items", "required": False, "children": [{"key": "name"}, {"key": "price"}]}], id="loop-children"),
    pytest.param("{{each tags}}{{loop_var}} {{loop_index}}{{end}}", [{"key": "tags", "required": False, "children": []}], id="loop-over-plain-values"),
    pytest.param("{{each order.lines}}{{loop_var.sku}}{{end}}", [{"key": "order.lines", "required": False, "children": [{"key": "sku"}]}], id="loop-over-a-path"),
    pytest.param(NESTED_LOOPS, [{"key": "shopping_cart", "required": False, "children": [{"key": "name"}, {"key": "price"}, {"key": "a_nested_array"}]}], id="nested-loops"),
    pytest.param("{{each a}}{{each b}}{{loop_vars.a.x}}{{loop_var.y}}{{end}}{{end}}", [{"key": "a", "required": False, "children": [{"key": "x"}]}, {"key": "b", "required": False, "children": [{"key": "y"}]}], id="loop-vars-reach-the-outer-loop"),
    pytest.param("{{each a}}{{if loop_var.on}}{{loop_var.address.city}}{{end}}{{end}}", [{"key": "a", "required": False, "children": [{"key": "on"}, {"key": "address.city"}]}], id="loop-children-in-conditions-and-paths"),
    pytest.param("{{#items}} {{each items}}{{loop_var.n}}{{end}}", [{"key": "items", "required": True, "children": [{"key": "n"}]}], id="loop-and-plain-use-merge"),
    pytest.param("{{address.email}} {{email}} {{email_id}} {{env_from}} {{return_path}} {{ true }} {{ nil }}", [], id="reserved-never-listed"),
    pytest.param("{{b}} {{a}} {{b}} {{c}} {{a}}", [{"key": "b", "required": True}, {"key": "a", "required": True}, {"key": "c", "required": True}], id="first-appearance-order-no-duplicates"),
    pytest.param("{{ render_dynamic_content(dynamic_html.offer) }} {{ opening_double_curly() }}", [{"key": "dynamic_html.offer", "required": True}], id="macros"),
    pytest.param("No tags at all", [], id="no-tags"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "expected"), MERGE_TAG_CASES)
def test_merge_tags(source: str, expected: list[dict[str, Any]]) -> None:
    assert compile_template(source).merge_tags() == expected


def test_merge_tags_are_a_fresh_copy_each_time() -> None:
    template = compile_template("{{each items}}{{loop_var.n}}{{end}}")
    first = template.merge_tags()
    first[0]["children"].append({"key": "changed"})
    first[0]["required"] = True
    assert template.merge_tags() == [{"key": "items", "required": False, "children": [{"key": "n"}]}]


# -- limits --------------------------------------------------------------------------------------------------------


def test_a_loop_bomb_stops_at_the_iteration_limit() -> None:
    rows = list(range(1_000))
    template = compile_template("{{each a}}{{each b}}{{each c}}.{{end}}{{end}}{{end}}")
    with pytest.raises(RenderLimitExceeded, match="10000"):
        template.render({"a": rows, "b": rows, "c": rows})


def test_an_output_bomb_stops_at_the_output_limit() -> None:
    template = compile_template("{{each l}}{{big}}{{big}}{{end}}")
    with pytest.raises(RenderLimitExceeded, match="2000000 characters"):
        template.render({"l": list(range(10_000)), "big": "x" * 1_000_000})


def test_a_normal_template_stays_within_the_default_limits() -> None:
    items = [{"name": f"item {n}", "price": n} for n in range(DEFAULT_LIMITS.max_loop_iterations)]
    output = render("{{each items}}{{loop_var.name}}: {{loop_var.price}}\n{{end}}", {"items": items})
    assert output.count("\n") == DEFAULT_LIMITS.max_loop_iterations


def test_limits_can_be_tightened_per_render() -> None:
    template = compile_template("{{if a}}{{each l}}{{loop_var}}{{end}}{{end}}")
    data = {"a": True, "l": ["ab", "cd", "ef"]}
    assert template.render(data, limits=Limits(max_loop_iterations=3, max_output_chars=6, max_depth=2)) == "abcdef"
    with pytest.raises(RenderLimitExceeded):
        template.render(data, limits=Limits(max_loop_iterations=2))
    with pytest.raises(RenderLimitExceeded):
        template.render(data, limits=Limits(max_output_chars=5))
    with pytest.raises(RenderLimitExceeded):
        template.render(data, limits=Limits(max_depth=1))
    with pytest.raises(RenderLimitExceeded):
        compile_template("{{ ((a)) }}").render({}, limits=Limits(max_depth=1))


def test_self_referencing_dynamic_content_stops_at_the_depth_limit() -> None:
    data = {"dynamic_html": {"loop": "x{{ render_dynamic_content(dynamic_html.loop) }}"}}
    with pytest.raises(RenderLimitExceeded, match="dynamic content"):
        render("{{ render_dynamic_content(dynamic_html.loop) }}", data)


def test_dynamic_content_counts_toward_the_same_limits() -> None:
    data = {"dynamic_html": {"c": "{{each l}}{{loop_var}}{{end}}"}, "l": list(range(8))}
    template = compile_template("{{ render_dynamic_content(dynamic_html.c) }}{{each l}}.{{end}}")
    assert template.render(data) == "01234567........"
    with pytest.raises(RenderLimitExceeded):
        template.render(data, limits=Limits(max_loop_iterations=10))
