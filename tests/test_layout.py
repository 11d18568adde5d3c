"""The package's house rules, checked on its source: layering, no circles, one owner, size.

Rooms of ``src/downpour``, lowest first (``docs/architecture.md``): a module
imports only from its own room and the rooms below it; the command line may
import everything; ``metrics`` is pure scoring.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "downpour"

#: Rooms, lowest first; each may import the rooms before it. Peers share a level.
LEVELS: list[tuple[str, ...]] = [
    ("core",),
    ("config",),
    ("data",),
    ("metrics",),
    ("models",),
    ("losses",),
    ("training",),
    ("report",),
    ("downscaling", "nowcast"),
    ("bench",),
    ("cli",),
]
LEVEL = {room: i for i, rooms in enumerate(LEVELS) for room in rooms}
#: What ``metrics`` (pure scoring) may import from the package.
METRICS_MAY_IMPORT = {"downpour.core.errors", "downpour.core.registry"}
#: Names of run-directory parts that only ``core/rundir.py`` may spell.
RUN_PATHS = {
    "checkpoints",
    "metrics",
    "figures",
    "samples",
    "logs",
    "forecasts",
    "config.yaml",
    "store.zarr",
    "augmented.zarr",
    "card.json",
    "normalization.json",
    "report.html",
}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Return ``{dotted name: path}`` of every module of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Return the package modules ``path`` imports (at module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("downpour"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base.startswith("downpour"):
                for alias in node.names:  # `from downpour.x import module` imports a module
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODS else base)
    return {m for m in found if m in MODS or m == "downpour"}


MODS = modules()
GRAPH = {name: imports_of(path, name) for name, path in MODS.items()}


def room(name: str) -> str | None:
    """Return the room of a dotted module name (None for the package's top modules)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LEVEL) else None


def test_every_room_has_a_level():
    rooms = {room(m) for m in MODS} - {None}
    assert rooms <= set(LEVEL), f"rooms without a level: {rooms - set(LEVEL)}"


def test_no_upward_import():
    bad = []
    for name, deps in GRAPH.items():
        src = room(name)
        if src is None or src == "cli":
            continue
        for dep in deps:
            dst = room(dep)
            if dst is None or dst == src:
                continue
            if LEVEL[dst] >= LEVEL[src]:
                bad.append(f"{name} imports {dep} ({dst} is not below {src})")
    assert not bad, "\n".join(bad)


def test_metrics_is_pure_scoring():
    bad = []
    forbidden_modules = ("matplotlib", "torch", "lightning", "zarr")
    io_calls = re.compile(r"\b(open|savez|savez_compressed|to_netcdf|to_zarr|write_text|load)\(")
    for name, path in MODS.items():
        if room(name) != "metrics":
            continue
        for dep in GRAPH[name]:
            if room(dep) != "metrics" and dep not in METRICS_MAY_IMPORT:
                bad.append(f"{name} imports {dep}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                bad += [
                    f"{name} imports {n}" for n in names if n.split(".")[0] in forbidden_modules
                ]
        code = "\n".join(
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith((">>>", "#"))
        )
        bad += [f"{name} does file I/O ({m.group(0)})" for m in io_calls.finditer(code)]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH.get(node, ())):
            if dep == node or dep == "downpour":
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state and (cycle := visit(name)):
            pytest.fail("import circle: " + " → ".join(cycle))


def _docstring_free_strings(tree: ast.AST) -> list[ast.Constant]:
    """Every string constant except docstrings."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


def test_only_rundir_spells_run_paths():
    bad = []
    for name, path in MODS.items():
        if name == "downpour.core.rundir":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and node.right.value in RUN_PATHS
            ):
                bad.append(f"{name}:{node.lineno}: … / {node.right.value!r}")
        for const in _docstring_free_strings(tree):
            if const.value in RUN_PATHS - {"metrics", "samples", "checkpoints", "logs", "figures"}:
                bad.append(f"{name}:{const.lineno}: {const.value!r}")
    assert not bad, "use downpour.core.rundir.RunDir:\n" + "\n".join(bad)


def test_long_modules_say_why():
    bad = []
    for name, path in MODS.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if "long because" not in doc:
            bad.append(f"{name}: {n} lines and no 'long because …' in its docstring")
    assert not bad, "\n".join(bad)


def test_nothing_points_outside_the_repository():
    texts = [p for p in PKG.rglob("*.py")] + [ROOT / "README.md"]
    texts += list((PKG / "config" / "presets").glob("*.yaml"))
    bad = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in texts
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "DESIGN.md" in line or "design-notes" in line
    ]
    assert not bad, "cite docs/ instead:\n" + "\n".join(bad)


def test_docs_anchors_cited_in_the_source_exist():
    cited = re.compile(r"docs/([a-z_]+\.md)(?:#([a-z0-9-]+))?")
    anchors: dict[str, set[str]] = {}
    for page in (ROOT / "docs").glob("*.md"):
        heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
        anchors[page.name] = {
            re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in heads
        }
    bad = []
    for p in [*PKG.rglob("*.py"), ROOT / "README.md"]:
        for m in cited.finditer(p.read_text(encoding="utf-8")):
            page, anchor = m.group(1), m.group(2)
            if page not in anchors or (anchor and anchor not in anchors[page]):
                bad.append(f"{p.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not bad, "\n".join(sorted(set(bad)))
