"""The documentation site builds with ``mkdocs build --strict``: every page in the navigation exists, every link
between pages and every anchor resolves, and every page is in the navigation. The README's links into ``docs/``
resolve too.

``PAGES_FROM_OTHER_BRANCHES`` are pages the navigation names that other branches add; until they are merged the
build gets a placeholder for each missing one, and nothing else is tolerated.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PAGES_FROM_OTHER_BRANCHES = frozenset(
    {"audit.md", "smtp.md", "operations.md", "performance.md", "security-model.md", "tracking.md", "audience.md"}
)


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    for page in PAGES_FROM_OTHER_BRANCHES:
        if not (tmp_path / "docs" / page).exists():
            (tmp_path / "docs" / page).write_text(f"# {page}\n\nAdded by another branch.\n")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(  # noqa: S603
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "sandbox" / "index.html").exists()


def test_the_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    for name in PAGES_FROM_OTHER_BRANCHES:
        (tmp_path / "docs" / name).write_text(f"# {name}\n")
    with (tmp_path / "docs" / "sandbox.md").open("a") as page:
        page.write("\nSee [nowhere](no-such-page.md).\n")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(  # noqa: S603
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_the_readmes_links_into_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", readme)
    assert links
    for target, anchor in links:
        path = ROOT / target
        assert path.exists() or path.name in PAGES_FROM_OTHER_BRANCHES, target
        if anchor and path.exists():
            headings = {_slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}
            assert anchor in headings, f"{target}#{anchor}"


def _slug(heading: str) -> str:
    """The anchor MkDocs' table of contents gives a heading."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))
