"""The shape of hepgen/: an acyclic import graph, small modules, no switch on a process or family name.

These read the source (ast and text), so they fail the moment a change breaks the layering that
CONTRIBUTING.md describes: a function-level import hiding a cycle, a module that grows past 450
lines, a ``family == ...`` outside hepgen/models/, a ``process.name == ...`` outside
hepgen/processes/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hepgen"
MAX_LINES = 450
MAX_TRAIN_LINES = 250
# the command line loads each command's library when the command runs, so `hepgen --help` and
# the simulation's worker processes start without torch, ONNX and matplotlib
LAZY_IMPORTS_ALLOWED = {"hepgen.cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The hepgen modules an import statement loads (a package's __init__ included)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.split(".")[0] == "hepgen"]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != "hepgen":
            return []
        names = [target] + [f"{target}.{a.name}" for a in node.names]
    loaded = set()
    for name in names:
        parts = name.split(".")
        loaded.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(loaded)


def _imports(modules: dict[str, Path]):
    """(module-level edges, function-level imports) over hepgen's own modules."""
    top: dict[str, set[str]] = {m: set() for m in modules}
    nested: dict[str, list[str]] = {m: [] for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        module_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            # a module's own parent packages are initialised before it (not an edge)
            targets = [t for t in _resolve(mod, is_package, node)
                       if t in modules and t != mod and not mod.startswith(t + ".")]
            if id(node) in module_level:
                top[mod].update(targets)
            elif targets:
                nested[mod].append(f"line {node.lineno}: {', '.join(targets)}")
    return top, nested


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_level_import_graph_is_acyclic():
    top, _ = _imports(_modules())
    cycle = _cycle(top)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_hepgen_modules_are_imported_at_module_level():
    _, nested = _imports(_modules())
    hidden = {m: lines for m, lines in nested.items() if lines and m not in LAZY_IMPORTS_ALLOWED}
    assert not hidden, f"function-level imports of hepgen modules: {hidden}"


def test_modules_are_small():
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}
    assert sizes["hepgen.train"] <= MAX_TRAIN_LINES


SWITCHES = {
    # pattern: the package allowed to hold it
    r"process\.name\s*(==|!=|in\b)": "hepgen/processes/",
    r"\bfamily\s*(==|!=|in\b)\s*[\"'(\[]": "hepgen/models/",
    r"\bin TOYS\b": "hepgen/processes/",
    r"isinstance\([^)]*Coords\)": "hepgen/coords/",
}


@pytest.mark.parametrize("pattern", sorted(SWITCHES))
def test_no_switch_on_a_process_or_family_name_outside_its_owner(pattern):
    owner = SWITCHES[pattern]
    hits = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE.parent))
        if rel.startswith(owner):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                hits.append(f"{rel}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)
