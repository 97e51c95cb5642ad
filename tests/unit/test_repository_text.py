"""The code speaks of the repository alone: no comment or docstring points at a document outside it. Facts from
the API contract or the design notes are written out where they are used, or in ``docs/``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(
    r"lettr-api"
    + r"\.md|security"
    + r"-notes|stack"
    + r"-notes|DESIGN"
    + r"(?:\.md| ?§)|STYLE"
    + r"\.md|\bissue"
    + r" \d+\b"
)


def test_no_source_file_cites_a_document_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("src", "tests", "bench", "scripts")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in {".py", ".sh", ".html", ".js", ".css"} and ".venv" not in path.parts
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_pattern_sees_a_citation() -> None:
    assert OUTSIDE.search("see " + "lettr-api" + ".md §5.2")
    assert OUTSIDE.search("(" + "issue" + " 8)")
    assert not OUTSIDE.search("the Lettr API's send route")
