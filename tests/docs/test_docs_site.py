"""The documentation site builds with ``mkdocs build --strict``: every page in the navigation exists, every link
between pages and every anchor resolves, and every page is in the navigation. The README's links into ``docs/``
resolve too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _build(tmp_path: Path, *, broken_link: bool = False) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of a copy of the docs (with a link to a missing page added to one, if asked)."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    if broken_link:
        with (tmp_path / "docs" / "sandbox.md").open("a") as page:
            page.write("\nSee [nowhere](no-such-page.md).\n")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    return subprocess.run(  # noqa: S603
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    result = _build(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "sandbox" / "index.html").exists()


def test_the_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    result = _build(tmp_path, broken_link=True)
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_the_readmes_links_into_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", readme)
    assert links
    for target, anchor in links:
        path = ROOT / target
        assert path.exists(), target
        if anchor:
            headings = {_slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}
            assert anchor in headings, f"{target}#{anchor}"


def _slug(heading: str) -> str:
    """The anchor MkDocs' table of contents gives a heading."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))
