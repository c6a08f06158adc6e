"""The layout's rules, checked on the source: imports point one way, and nowhere in a circle.

- No import cycle inside calls/ or providers/ (function-level imports count too: an import
  hidden in a function is still a dependency, and hiding one is how cycles crept in).
- providers/ never imports calls/ or Django's ORM: carrier adapters are plain Python that
  the services drive (docs/architecture.md).
- A function-level import says why on its own line or the line above (a "# " comment).
- Tests mirror the code: every module of calls/services/ has tests/services/test_<name>.py.

`from pkg import name` depends on the module pkg.name when that is a module, else on pkg
itself — the way import-linter models a package's re-exports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("calls", "providers", "voicecall_project")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that `name` (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(imported name, statement, at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    # Module level, including `if TYPE_CHECKING:` and try/except blocks at the top.
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If | ast.Try):
            top |= {id(inner) for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".rstrip(".")
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in MODULES else base), node, id(node) in top


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module, path in MODULES.items():
        for name, _, _ in _imports(module, path):
            target = _owner(name)
            if target and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_calls_or_providers() -> None:
    graph = _graph()
    inside = {
        m: {t for t in ts if t.split(".")[0] in ("calls", "providers")}
        for m, ts in graph.items()
        if m.split(".")[0] in ("calls", "providers")
    }
    assert _cycles(inside) == []


def test_providers_import_neither_calls_nor_the_orm() -> None:
    offending = [
        f"{module}: {name}"
        for module, path in MODULES.items()
        if module.startswith("providers")
        for name, _, _ in _imports(module, path)
        if name.split(".")[0] == "calls" or name.startswith(("django.db", "django.contrib"))
    ]
    assert offending == []


def test_function_level_imports_say_why() -> None:
    silent = set()
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, node, at_top in _imports(module, path):
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if not at_top and "#" not in here and not above.startswith("#"):
                silent.add(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert sorted(silent) == []


def test_every_service_module_has_its_own_test_module() -> None:
    services = {p.stem for p in (ROOT / "calls" / "services").glob("*.py")} - {"__init__"}
    tested = {p.stem.removeprefix("test_") for p in (ROOT / "tests" / "services").glob("test_*.py")}
    missing = sorted(services - tested)
    assert not missing, f"service modules without tests/services/test_<name>.py: {missing}"


def test_the_checker_sees_a_cycle() -> None:
    # The check above must be able to fail: a two-module circle is one component.
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
