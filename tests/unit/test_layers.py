"""The packages of ``postroom`` stand in layers: each imports only from the layers below it, so no two packages
import each other (directly or round a longer loop). Every import counts: module level, inside functions, and
under ``TYPE_CHECKING``.

A new package gets a row in ``LAYERS``; a package that needs something from a package on its own layer or above
has found a piece that belongs lower down (see how ``messages`` holds the send request and the event shape).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "postroom"

LAYERS: list[set[str]] = [
    {"errors"},
    {"core"},
    {"config", "models"},
    {"db"},
    {"audit", "auth", "jobs", "observability", "messages"},
    {"apikeys"},
    {"teams", "webhooks", "domains"},
    {"templates", "inbox"},
    {"emails"},
    {"audience", "tracking"},
    {"delivery"},
    {"relay"},
    {"dashboard"},
    {"system"},
    {"app"},
    {"cli"},
    {"__main__"},
]


def _package_of(path: Path, root: Path = SOURCE) -> str:
    relative = path.relative_to(root)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def import_graph(root: Path = SOURCE) -> dict[str, dict[str, list[str]]]:
    """package → imported package → where (``file:line``), for every ``postroom`` import outside the migrations."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.relative_to(root).parts:
            continue  # a migration is frozen history: it may use what the code of its day offered
        package = _package_of(path, root)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "postroom" and len(parts) > 1 and parts[1] != package:
                    graph[package][parts[1]].append(f"{path.relative_to(root)}:{node.lineno}")
    return graph


def _layer_of() -> dict[str, int]:
    return {package: level for level, packages in enumerate(LAYERS) for package in packages}


def test_every_package_has_a_layer() -> None:
    packages = {_package_of(path) for path in SOURCE.rglob("*.py")} - {"__init__"}
    missing = sorted(packages - set(_layer_of()))
    assert not missing, f"add these packages to LAYERS in {__file__}: {missing}"


def breaches(graph: dict[str, dict[str, list[str]]], layer: dict[str, int]) -> list[str]:
    return [
        f"{package} (layer {layer[package]}) imports {target} (layer {layer[target]}) at {', '.join(where)}"
        for package, targets in sorted(graph.items())
        for target, where in sorted(targets.items())
        if package in layer and target in layer and layer[target] >= layer[package]
    ]


def test_each_package_imports_only_from_the_layers_below_it() -> None:
    found = breaches(import_graph(), _layer_of())
    assert not found, "\n".join(found)


def test_a_new_cycle_is_a_breach(tmp_path: Path) -> None:
    """Two packages importing each other (one inside a function) are caught, with the places named."""
    for name in ("low", "high"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "high" / "service.py").write_text("from postroom.low import queries\n")
    (tmp_path / "low" / "queries.py").write_text("def f():\n    from postroom.high import service\n")
    found = breaches(import_graph(tmp_path), {"low": 0, "high": 1})
    assert found == ["low (layer 0) imports high (layer 1) at low/queries.py:2"]


def test_the_graph_holds_the_known_imports() -> None:
    graph = import_graph()
    assert "messages" in graph["emails"]
    assert all(":" in place for place in graph["delivery"]["emails"])
