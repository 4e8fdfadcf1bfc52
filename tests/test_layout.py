"""The package layout: dependencies point one way and no module imports itself in a circle.

cli -> api / batch / evaluation -> the decision core (policy, scoring, ...) -> model;
data/ never imports service/; model/ imports neither. Every import counts, including the
ones inside functions (those are how the old circle between the CLI modules hid).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "data", "service")
# Which layer a module belongs to, by its dotted prefix (most specific first).
LAYERS = (
    ("service.cli", "cli"),
    ("service.api", "api"),
    ("service.batch", "batch"),
    ("service.evaluation", "evaluation"),
    ("service", "core"),
    ("data", "data"),
    ("model", "model"),
)
# What each layer may import; anything else is a dependency pointing the wrong way.
# The ways in (api, batch, evaluation) do not import one another.
ALLOWED = {
    "cli": {"cli", "api", "batch", "evaluation", "core", "data", "model"},
    "api": {"api", "core", "data", "model"},
    "batch": {"batch", "core", "data", "model"},
    "evaluation": {"evaluation", "core", "data", "model"},
    "core": {"core", "data", "model"},
    "data": {"data", "model"},
    "model": {"model"},
}


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def layer(module: str) -> str:
    return next(
        name for prefix, name in LAYERS if module == prefix or module.startswith(prefix + ".")
    )


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its body)."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                candidates = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules}
        # A package's own __init__ is imported with any of its modules: not a dependency.
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    # service.cli.pipeline imports model.artifact only inside ``score``.
    assert "model.artifact" in graph["service.cli.pipeline"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_dependencies_point_one_way() -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) not in ALLOWED[layer(module)]
    )
    assert wrong == []


@pytest.mark.parametrize("module", sorted(m for m in module_files() if m != "service.cli.__main__"))
def test_every_module_imports_alone(module: str) -> None:
    """Each module imports in a fresh interpreter (a cycle would fail on one entry point)."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
