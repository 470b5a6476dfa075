"""The layers hold: every import in backend/, shared/ and addon/ (read with ``ast``, lazy imports inside functions
included) runs down or sideways, never up, and no modules of backend/, shared/ or addon/ import each other in a
circle.

The backend's layers, lowest first, are ``LAYERS``; a module may import its own layer and any below it. shared/ is
the contract both sides import, so it imports neither of them (nor torch or bpy); the add-on runs inside Blender,
so it never imports the backend or torch.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import REPO_ROOT

PACKAGE = "carrara"
#: Lowest first. backend/profiling.py is the named profiler ranges every engine layer may carry.
LAYERS = ("shared", "backend.profiling", "backend.data", "backend.model", "backend.render", "backend.train",
          "backend.mesh", "backend.prepare", "backend.jobs", "backend.server", "backend.cli", "backend.__main__")
#: Third-party packages each side must never import.
FORBIDDEN = {"shared": ("torch", "bpy"), "addon": ("torch",)}
SCANNED = ("backend", "shared", "addon")
#: Where no modules may import each other in a circle.
CIRCLE_FREE = ("backend", "shared", "addon")


@dataclass(frozen=True)
class Import:
    source: str         # the importing module, e.g. carrara.backend.jobs.kinds
    path: Path          # its file, relative to the repository
    line: int
    target: str         # the imported module, absolute


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _resolve(base: str, name: str, modules: set[str]) -> str:
    """``from base import name`` names the submodule ``base.name`` when there is one, else ``base`` itself."""
    candidate = f"{base}.{name}"
    return candidate if candidate in modules else base


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Import]:
    """Every module ``path`` imports, relative imports made absolute."""
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    relative = path.relative_to(root)
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(source, relative, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found += [Import(source, relative, node.lineno, _resolve(base, alias.name, modules))
                      for alias in node.names]
    return found


def scan(root: Path) -> list[Import]:
    files = [path for folder in SCANNED for path in sorted((root / folder).rglob("*.py"))]
    modules = {module_name(path, root) for path in files}
    return [found for path in files for found in imports_of(path, root, modules)]


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a carrara module, by its longest matching prefix; None outside the layered tree."""
    name = module.removeprefix(PACKAGE + ".")
    matches = [i for i, layer in enumerate(LAYERS) if name == layer or name.startswith(layer + ".")]
    return max(matches, key=lambda i: len(LAYERS[i])) if matches else None


def _side(module: str) -> str:
    return module.removeprefix(PACKAGE + ".").split(".")[0]


def layer_problems(found: list[Import]) -> list[str]:
    problems = [f"{path}: a backend module in no layer; add it to LAYERS in {__file__}"
                for path in sorted({imp.path for imp in found
                                    if _side(imp.source) == "backend" and layer_of(imp.source) is None})]
    for imp in found:
        where = f"{imp.path}:{imp.line} imports {imp.target}"
        side, top = _side(imp.source), imp.target.split(".")[0]
        if top in FORBIDDEN.get(side, ()):
            problems.append(f"{where}: {side}/ must not import {top}")
        if not imp.target.startswith(PACKAGE + "."):
            continue
        target_side = _side(imp.target)
        if side == "shared" and target_side in ("backend", "addon"):
            problems.append(f"{where}: shared/ is the contract both sides import; it imports neither")
        elif side == "addon" and target_side == "backend":
            problems.append(f"{where}: the add-on talks to the backend through shared/protocol.py only")
        elif side == "backend":
            mine, theirs = layer_of(imp.source), layer_of(imp.target)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(f"{where}: {LAYERS[mine]} lies below {LAYERS[theirs]} and must not import it "
                                f"(layers, lowest first: {' -> '.join(LAYERS)})")
    return problems


def cycles(found: list[Import]) -> list[list[str]]:
    """Groups of modules (of CIRCLE_FREE) that import each other in a circle (Tarjan's strongly connected
    components)."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        if _side(imp.source) in CIRCLE_FREE and imp.target.startswith(PACKAGE + ".") and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_problems(found: list[Import]) -> list[str]:
    problems = []
    for group in cycles(found):
        members = set(group)
        edges = sorted({f"{imp.path}:{imp.line} imports {imp.target}" for imp in found
                        if imp.source in members and imp.target in members})
        problems.append(f"import circle among {', '.join(group)}: {'; '.join(edges)}")
    return problems


@pytest.fixture(scope="module")
def found() -> list[Import]:
    return scan(REPO_ROOT)


def test_every_backend_module_has_a_layer_and_no_import_runs_upward(found):
    assert found, "no imports read: is REPO_ROOT the repository?"
    problems = layer_problems(found)
    assert not problems, "\n".join(problems)


def test_no_modules_import_each_other_in_a_circle(found):
    problems = cycle_problems(found)
    assert not problems, "\n".join(problems)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in SCANNED:
        (root / folder).mkdir(exist_ok=True)
    return root


def test_the_checks_name_an_upward_import_a_forbidden_library_and_a_circle(tmp_path):
    """The checks on a small tree of the same shape: each wrong import is named with its file and line."""
    root = _tree(tmp_path, {
        "backend/__init__.py": "",
        "backend/data/__init__.py": "",
        "backend/data/dataset.py": "import os\n\ndef load():\n    from ..jobs.failure import JobFailed\n",
        "backend/jobs/__init__.py": "",
        "backend/jobs/failure.py": "from ..data import dataset\n",
        "backend/jobs/kinds.py": "from . import failure\nfrom .reporting import Reporter\n",
        "backend/jobs/reporting.py": "from .kinds import runner\n",
        "backend/stray.py": "import json\n",
        "shared/__init__.py": "",
        "shared/protocol.py": "import numpy\nimport torch\nfrom ..backend.jobs import kinds\n",
        "addon/__init__.py": "from ..shared import protocol\nfrom ..backend.jobs import kinds\nimport torch\n",
    })
    found = scan(root)
    problems = "\n".join(layer_problems(found))
    assert "backend/data/dataset.py:4 imports carrara.backend.jobs.failure: backend.data lies below backend.jobs" \
        in problems
    assert "backend/stray.py: a backend module in no layer" in problems
    assert "shared/protocol.py:2 imports torch: shared/ must not import torch" in problems
    assert "shared/protocol.py:3 imports carrara.backend.jobs.kinds: shared/ is the contract" in problems
    assert "addon/__init__.py:2 imports carrara.backend.jobs.kinds: the add-on" in problems
    assert "addon/__init__.py:3 imports torch: addon/ must not import torch" in problems
    assert "protocol.py:1" not in problems and "addon/__init__.py:1" not in problems and "kinds.py:1" not in problems
    circles = cycle_problems(found)
    assert len(circles) == 2, circles
    assert any("carrara.backend.jobs.kinds, carrara.backend.jobs.reporting" in c
               and "backend/jobs/reporting.py:1 imports carrara.backend.jobs.kinds" in c for c in circles)
    assert any("carrara.backend.data.dataset, carrara.backend.jobs.failure" in c for c in circles)
