"""The layering the tree promises, checked on every import of the code.

lending (pure) <- pipeline <- store <- services <- reports, cli, app/pages. No import cycles
between modules, and no page or command reaches into the store's tables or SQLAlchemy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "finflow_core"
#: which top-level parts of finflow_core each part may import (besides errors, formatting)
ALLOWED = {
    "lending": {"lending"},
    "security": {"lending", "security"},  # where the key lives is configuration
    "pipeline": {"lending", "pipeline"},
    "store": {"lending", "pipeline", "store", "security"},
    "services": {"lending", "pipeline", "store", "security", "services", "reports"},
    # rendering; a service's result types only for type hints (no import at run time: see the
    # cycle test)
    "reports": {"lending", "services", "reports"},
    # commands: services only (files and fault words through services.files)
    "cli": {"lending", "pipeline", "services", "reports", "cli"},
}
SHARED = {"errors", "formatting"}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        yield name, path


#: The composition root: the facade builds every service on first use (imports inside its
#: properties), and no service may import it back except to hand it out (the sign-in gate).
COMPOSITION_ROOTS = {"workbench.py"}


def imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """finflow_core modules imported by ``path`` (TYPE_CHECKING blocks, and the composition
    root's imports inside functions, left out if asked)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for n in ast.walk(node)}
            if path.name in COMPOSITION_ROOTS and isinstance(node, ast.FunctionDef):
                skip |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("finflow_core"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("finflow_core")}
    return found


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_each_layer_imports_only_the_layers_below_it(name: str, path: Path) -> None:
    mine = part(name)
    if mine not in ALLOWED:
        return  # errors, formatting, the package root
    wrong = []
    for target in imports(path):
        other = part(target)
        if other in SHARED or other in ALLOWED[mine] or not other:
            continue
        if any(target.startswith(f"finflow_core.{a}") for a in ALLOWED[mine] if "." in a):
            continue
        wrong.append(target)
    assert not sorted(set(wrong)), f"{name} imports {sorted(set(wrong))}"


def test_no_import_cycles_between_modules() -> None:
    names = dict(modules())
    graph = {n: {t for t in imports(p, runtime_only=True) if t in names and t != n} for n, p in names.items()}
    # a package's __init__ importing its own modules is not a cycle of the design
    for n in graph:
        graph[n] = {t for t in graph[n] if not n.startswith(t + ".") or names[t].name != "__init__.py"}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(n: str) -> None:
        seen[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if seen.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in seen:
                visit(m)
        stack.pop()
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    assert cycles == []


@pytest.mark.parametrize("path", sorted([*ROOT.glob("pages/*.py"), ROOT / "app.py",
                                         *ROOT.glob("finflow_app/*.py"), *PACKAGE.glob("cli/*.py")]),
                         ids=lambda p: p.name)
def test_pages_and_commands_never_reach_into_the_store(path: Path) -> None:
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("sqlalchemy") or node.module.endswith("_tables") or \
                    node.module == "finflow_core.store.tables":
                bad.append(node.module)
        elif isinstance(node, ast.Import):
            bad += [a.name for a in node.names if a.name.startswith("sqlalchemy")]
    assert bad == []
