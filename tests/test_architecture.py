"""Structure of the sources, read with ``ast`` (nothing is imported):

* no import cycle among the modules of ``model_runtime/`` and ``fullbody_addon/``: every
  ``import``/``from ... import`` counts, at module level or inside a function (relative imports
  resolved); ``from pkg import name`` is an import of the module ``pkg.name`` when there is one,
  else of ``pkg``;
* what Blender imports through ``fullbody_addon/_runtime.py`` pulls in, at import time, no torch,
  scipy, cv2 or mediapipe;
* no source file is over :data:`MAX_LINES` lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model_runtime", "fullbody_addon")
MAX_LINES = 600
HEAVY = {"torch", "scipy", "cv2", "mediapipe"}


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/<package>``."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.AST, module: str, is_package: bool, module_level_only: bool = False):
    """``(target, imported name or None)`` of every import in ``tree``; targets absolute, dotted."""
    nodes = []

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)) and (top or not module_level_only):
                nodes.append(child)
            visit(child, inner)

    visit(tree, True)
    package = module if is_package else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
            continue
        base = package
        if node.level:
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = ".".join(p for p in (base, node.module) if p)
        else:
            base = node.module or ""
        for alias in node.names:
            yield base, alias.name


def import_graph(files: dict[str, Path], module_level_only: bool = False) -> tuple[dict, dict]:
    """-> (module -> project modules it imports, module -> top-level names of other imports)."""
    edges: dict[str, set[str]] = {m: set() for m in files}
    external: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for target, name in _imports(tree, mod, path.name == "__init__.py", module_level_only):
            if name is not None and f"{target}.{name}" in files:
                target = f"{target}.{name}"
            if target in files:
                if target != mod:
                    edges[mod].add(target)
            elif not target.startswith(PACKAGES):
                external[mod].add(target.split(".")[0])
    return edges, external


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(cycles)


def test_no_import_cycle_between_project_modules():
    edges, _ = import_graph(module_files(REPO))
    cycles = import_cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(f"{m} imports {sorted(edges[m] & set(c))}" for m in c)
        for c in cycles)


def test_cycle_finder_sees_relative_function_level_and_package_imports(tmp_path):
    """The finder itself: a cycle closed by a relative import inside a function, through a
    ``from pkg import module`` and via ``import a.b``, is found; an acyclic chain is not."""
    pkg = tmp_path / "model_runtime"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .. import c\n")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("import os\nimport model_runtime.d\n")
    (pkg / "d.py").write_text("import numpy as np\n")
    edges, external = import_graph(module_files(tmp_path, ("model_runtime",)))
    assert edges["model_runtime.a"] == {"model_runtime.sub.b"}
    assert edges["model_runtime.sub.b"] == {"model_runtime.a"}
    assert import_cycles(edges) == [["model_runtime.a", "model_runtime.sub.b"]]
    assert edges["model_runtime.sub"] == {"model_runtime.c"} and edges["model_runtime.c"] == {"model_runtime.d"}
    assert external["model_runtime.d"] == {"numpy"}
    module_level, _ = import_graph(module_files(tmp_path, ("model_runtime",)), module_level_only=True)
    assert module_level["model_runtime.sub.b"] == set() and import_cycles(module_level) == []


def test_blender_side_imports_no_heavy_package():
    """Blender's Python imports ``fullbody_addon`` and, through ``_runtime``, parts of
    ``model_runtime``: at import time none of them may need torch, scipy, cv2 or mediapipe."""
    files = module_files(REPO)
    edges, external = import_graph(files, module_level_only=True)
    seen, todo = set(), [m for m in files if m.startswith("fullbody_addon")]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(edges[m])
    assert "model_runtime.models.load" in seen and "model_runtime.core.rotations" in seen
    heavy = {m: sorted(external[m] & HEAVY) for m in sorted(seen) if external[m] & HEAVY}
    assert not heavy, f"imported by the add-on at import time: {heavy}"


def test_no_source_file_is_too_long():
    long = {}
    for path in module_files(REPO).values():
        rel = path.relative_to(REPO).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long[rel] = n
    assert not long, f"over {MAX_LINES} lines: {long}"
