"""The package's shape: rooms by pipeline stage, no import circles, no import up the layers.

Reads the source with ``ast`` only (nothing is imported), so it is fast and checks function-level
imports too (a lazy import is still a dependency). An import edge is every ``import`` /
``from ... import`` of a ``blinkbench`` module anywhere in a file, plus every string constant
that names a ``blinkbench`` module (the registries import their modules by name).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "blinkbench"

# Lowest first. A module may import its own layer (without circles) and the layers below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("blinkbench", "blinkbench.core")),       # the root package holds only __version__
    ("video", ("blinkbench.video",)),
    ("datasets/spine", ("blinkbench.datasets", "blinkbench.spine")),
    ("detectors/mesh_torch", ("blinkbench.detectors", "blinkbench.mesh_torch")),
    ("attacks", ("blinkbench.attacks",)),
    ("defence", ("blinkbench.defence",)),                # post-training defence: detectors + attacks
    ("experiments", ("blinkbench.experiments",)),
    ("report", ("blinkbench.report",)),
    ("ops", ("blinkbench.ops",)),                       # DVC remote tools: S3 server, sync (run with -m)
    ("cli/testing", ("blinkbench.cli", "blinkbench.__main__", "blinkbench.testing")),
]
# Entry points and test helpers: nothing in the package imports these (``python -m
# blinkbench`` runs __main__, which is the one module allowed to import the CLI; the ops
# tools run as ``python -m blinkbench.ops.<tool>``).
NOT_IMPORTED = ("blinkbench.cli", "blinkbench.testing", "blinkbench.ops")


def module_name(path: Path) -> str:
    parts = ["blinkbench", *path.relative_to(PKG).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, name: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The blinkbench modules ``name`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "blinkbench"}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, path.name == "__init__.py")
            if base.split(".")[0] != "blinkbench":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known
              and id(node) not in docstrings):
            out.add(node.value)
    # importing a.b.c also runs a and a.b; only the named module counts as the dependency
    return {m for m in out if m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) & known for name, path in mods.items()}


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def layer(name: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = name == p or (p != "blinkbench" and name.startswith(p + "."))   # the root: itself only
            if inside and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


@pytest.fixture(scope="module")
def g() -> dict[str, set[str]]:
    return graph()


def test_the_walker_sees_function_level_and_by_name_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "blinkbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text('"""blinkbench.b"""\n'                  # a docstring is not an import
                              "def f():\n    from .sub import c\n    return c\n")
    (pkg / "b.py").write_text('MODULES = ("blinkbench.a",)\n')
    (pkg / "sub" / "c.py").write_text("from ..b import MODULES\nimport blinkbench.a\n")
    monkeypatch.setitem(globals(), "PKG", pkg)
    got = graph()
    assert got["blinkbench.a"] == {"blinkbench.sub.c"}
    assert got["blinkbench.b"] == {"blinkbench.a"}
    assert got["blinkbench.sub.c"] == {"blinkbench.b", "blinkbench.a"}
    assert circles(got) == [["blinkbench.a", "blinkbench.b", "blinkbench.sub.c"]]


def test_every_module_is_in_a_layer(g):
    loose = sorted(m for m in g if layer(m) is None)
    assert not loose, f"modules outside every room of LAYERS: {loose}"


def test_no_import_circles(g):
    found = circles(g)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_import_from_a_lower_layer_to_a_higher_one(g):
    up = sorted(f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
                for m, targets in g.items() for t in targets
                if layer(m) is not None and layer(t) is not None and layer(t) > layer(m))
    assert not up, "imports up the layers:\n" + "\n".join(up)


def test_nothing_in_the_package_imports_the_cli_or_the_test_helpers(g):
    bad = sorted(f"{m} imports {t}" for m, targets in g.items() for t in targets
                 if t.startswith(NOT_IMPORTED) and not m.startswith(NOT_IMPORTED)
                 and not (m == "blinkbench.__main__" and t == "blinkbench.cli"))
    assert not bad, "\n".join(bad)


# One command-line entry point (issue 11 point 1). The ops tools (``python -m
# blinkbench.ops.sync`` / ``ops.s3_server``) are separate programs for the DVC remote, run
# without the pipeline, so they keep their own parsers; every pipeline and experiment
# command is a ``blinkbench`` subcommand defined in cli.py.
ENTRY_POINTS = ("blinkbench.cli", "blinkbench.__main__")
SEPARATE_TOOLS = ("blinkbench.ops",)


def _module_level_facts(path: Path) -> tuple[bool, bool]:
    """(imports argparse anywhere, has an ``if __name__ == "__main__"`` block)."""
    tree = ast.parse(path.read_text(), str(path))
    argp = any((isinstance(n, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in n.names))
               or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "argparse")
               for n in ast.walk(tree))
    main = any(isinstance(n, ast.If) and "__name__" in ast.unparse(n.test) and "__main__" in ast.unparse(n.test)
               for n in tree.body)
    return argp, main


def _outside(prefixes: tuple[str, ...], name: str) -> bool:
    return not any(name == p or name.startswith(p + ".") for p in prefixes)


def test_argparse_and_main_blocks_only_in_the_cli_and_the_ops_tools():
    bad = []
    for name, path in modules().items():
        argp, main = _module_level_facts(path)
        allowed = not _outside(ENTRY_POINTS + SEPARATE_TOOLS, name)
        if argp and not allowed:
            bad.append(f"{name} imports argparse (give it a subcommand in blinkbench.cli)")
        if main and not allowed:
            bad.append(f"{name} has an `if __name__ == '__main__'` entry point")
    assert not bad, "\n".join(bad)


def test_no_module_imports_the_cli(g):
    """Stricter than the layer rule: only ``__main__`` may import blinkbench.cli (the ops
    tools and test helpers included)."""
    bad = sorted(f"{m} imports blinkbench.cli" for m, targets in g.items()
                 if "blinkbench.cli" in targets and m != "blinkbench.__main__")
    assert not bad, "\n".join(bad)


def test_the_fact_finder_sees_argparse_and_main_blocks(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    import argparse\n")
    (tmp_path / "b.py").write_text("from argparse import ArgumentParser\nif __name__ == '__main__':\n    pass\n")
    (tmp_path / "c.py").write_text('"""argparse"""\nX = "__main__"\n')
    assert _module_level_facts(tmp_path / "a.py") == (True, False)
    assert _module_level_facts(tmp_path / "b.py") == (True, True)
    assert _module_level_facts(tmp_path / "c.py") == (False, False)
