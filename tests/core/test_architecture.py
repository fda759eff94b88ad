"""The package's layers point down only, and no module imports another in a cycle (ARCHITECTURE.md).

The test reads every module's imports with ``ast`` (those inside functions included, so a lazy import
counts like any other; ``if TYPE_CHECKING:`` blocks do not, as they never run) and maps each module to
its layer. A module may import its own layer's core modules and anything below it; the packages of one
layer (engine, infer, generate) may not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "ferlab"

#: bottom to top; a module may import modules of its own entry's *core* group or of lower layers
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"errors", "labels", "io", "hardware", "plots", "tables", "_version", "_lazy"}),
    ("data", {"data"}),
    ("faces", {"faces"}),
    ("transforms", {"transforms"}),
    ("models", {"models"}),
    ("runtime", {"runtime"}),
    ("engine | infer | generate", {"engine", "infer", "generate"}),
    ("analysis", {"analysis"}),
    ("cli", {"cli", "__main__", ""}),  # "": the package's own __init__ (the public API, lazy re-exports)
]
#: the registry's own lazy import of every model module (so the models register); allowed both ways
ALLOWED_CYCLES = {("ferlab.models._registry", "ferlab.models._zoo")}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(mod: str, path: Path) -> set[str]:
    """The ferlab modules ``mod`` imports (the most specific existing module of each import)."""
    is_pkg = path.name == "__init__.py"
    pkg = mod if is_pkg else mod.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] == "ferlab":
                    for alias in child.names:
                        sub = f"{target}.{alias.name}"
                        found.add(sub if sub in MODULES else target)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "ferlab")
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(mod)
    return found


def _lazy_exports(mod: str) -> set[str]:
    """The modules a package ``__init__`` re-exports from lazily (its ``_EXPORTS`` table, see ferlab._lazy)."""
    import importlib
    import importlib.util

    table = getattr(importlib.import_module(mod), "_EXPORTS", None) or {}
    return {importlib.util.resolve_name(rel, mod) for rel in table.values()} - {mod}


GRAPH = {
    m: _imports(m, p) | (_lazy_exports(m) if p.name == "__init__.py" else set()) for m, p in MODULES.items()
}


def layer_of(mod: str) -> int:
    first = mod.split(".")[1] if "." in mod else ""
    for i, (_, names) in enumerate(LAYERS):
        if first in names:
            return i
    raise AssertionError(f"module {mod} is in no layer: add its package to LAYERS and to ARCHITECTURE.md")


def test_every_module_has_a_layer():
    for m in MODULES:
        layer_of(m)


def violations(graph) -> list[str]:
    """Upward imports, and imports between the packages of one layer (core modules aside)."""
    bad = []
    for m, targets in graph.items():
        lm, top_m = layer_of(m), ([*m.split("."), ""])[1]
        for t in targets:
            lt, top_t = layer_of(t), ([*t.split("."), ""])[1]
            if lt > lm:
                bad.append(f"{m} ({LAYERS[lm][0]}) imports {t} ({LAYERS[lt][0]}): upward")
            elif lt == lm and top_t != top_m and LAYERS[lm][0] not in ("core", "cli"):
                bad.append(f"{m} imports {t}: packages of one layer may not import each other")
    return sorted(bad)


def cycles(graph) -> list[list[str]]:
    """The import cycles of ``graph`` (Tarjan's strongly connected components), the allowed ones aside."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def edges(v):
        return [w for w in graph.get(v, ()) if w in graph and (v, w) not in ALLOWED_CYCLES
                and (w, v) not in ALLOWED_CYCLES]  # fmt: skip

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return comps


def test_imports_point_down_only():
    bad = violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_what_they_forbid():
    # the same checks over the real graph plus injected edges: each kind of fault is reported
    g = {k: set(v) for k, v in GRAPH.items()}
    g["ferlab.data.base"].add("ferlab.engine.trainer")  # upward (lazy or not: the walker sees both)
    g["ferlab.engine.queue"].add("ferlab.infer.recognizer")  # sideways between packages of one layer
    bad = violations(g)
    assert any("ferlab.data.base (data) imports ferlab.engine.trainer" in b for b in bad)
    assert any("ferlab.engine.queue imports ferlab.infer.recognizer" in b for b in bad)
    g = {k: set(v) for k, v in GRAPH.items()}
    g["ferlab.runtime.files"].add("ferlab.runtime.ensemble")  # ensemble imports files: a cycle
    assert any({"ferlab.runtime.ensemble", "ferlab.runtime.files"} <= set(c) for c in cycles(g))


def test_the_walker_sees_lazy_re_exports():
    assert "ferlab.models._registry" in GRAPH["ferlab.models"]
    assert "ferlab.runtime.ensemble" in GRAPH["ferlab"]


def test_the_walker_sees_lazy_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text(
        "def f():\n    from ..engine import trainer\n\nif TYPE_CHECKING:\n    from ..infer import x\n"
    )
    assert _imports("ferlab.data.m", p) == {"ferlab.engine.trainer"}
