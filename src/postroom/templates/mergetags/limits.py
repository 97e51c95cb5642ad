"""Resource limits for one render, and the error raised when a render exceeds them.

Templates and their data both come from API callers, so a render must stay bounded whatever they send: a loop over
a huge array, nested loops that multiply, or a value repeated until the message is gigabytes. The caps follow
python-liquid's model (output size, loop iterations, nesting) and are counted per render, across the whole template.
"""

from __future__ import annotations

from dataclasses import dataclass


class RenderLimitExceeded(RuntimeError):
    """A render produced too much output, ran too many loop iterations or nested too deeply.

    This is the only exception a render raises: everything else about the data (missing keys, wrong types,
    division by zero) renders empty or evaluates false.
    """


@dataclass(frozen=True)
class Limits:
    """Caps for one render. The defaults are far above what a real email needs."""

    max_output_chars: int = 2_000_000
    """Characters of output, text and substituted values together."""
    max_loop_iterations: int = 10_000
    """Iterations of every ``{{each}}`` in one render added together, so nested loops cannot multiply."""
    max_depth: int = 32
    """Nesting of ``{{if}}``/``{{each}}`` blocks (and of ``render_dynamic_content``), and of expressions."""


DEFAULT_LIMITS = Limits()

MAX_COMPILE_DEPTH = DEFAULT_LIMITS.max_depth
"""Deepest block or expression nesting ``compile_template`` accepts. Rejecting it when the template is saved gives
the author a line and column, rather than a failure at every send."""

MAX_TAGS = 50_000
MAX_TOKENS = 200_000
"""Most tags, and most tokens inside them, one template may contain. Compiling costs microseconds per tag and
token, so these keep a hostile 5 MB template made of nothing but tags to about a second; a real email, even a long
invoice, uses a few hundred tags."""
