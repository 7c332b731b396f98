"""The layers hold: no import cycle, no arrow up or sideways between the packages.

``contracts`` ← ``services.common`` ← ``services.gateway`` · ``services.dispatcher`` ·
``services.notifier`` · ``modal_workers`` ← ``services.cli`` (and ``bench``). The gateway and the
notifier never import each other; workers never import the dispatcher (nor any service). Every
import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import is still a tie.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "services", "modal_workers", "bench")

LAYER = {
    "contracts": 0,
    "services.common": 1,
    "services.gateway": 2,
    "services.dispatcher": 2,
    "services.notifier": 2,
    "modal_workers": 2,
    "services.cli": 3,
    "bench": 4,
}
"""The floor of each package; an import may only point to a lower floor or within its package."""

ALLOWED_SIDEWAYS = {("services.dispatcher", "modal_workers")}
"""The one tie across a floor: the dispatcher's local pool runs the runtime's process body."""


def package_of(module: str) -> str | None:
    """The layered package a module belongs to (the longest matching prefix), or None."""
    best = None
    for name in LAYER:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def module_name(path: Path) -> str:
    """``services/gateway/app.py`` → ``services.gateway.app``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, modules: set[str]) -> Iterator[str]:
    """Every project module ``path`` imports (relative imports resolved).

    ``from package import submodule`` ties to the submodule; ``from module import name`` to the module.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
            yield from submodules
            if len(submodules) < len(node.names) and base in modules:
                yield base


def project_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    return {module: set(imports_of(path, module, modules)) - {module} for module, path in files.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that points up a floor or sideways between packages."""
    found = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        for target in sorted(targets):
            dest = package_of(target)
            if source is None or dest is None or source == dest or (source, dest) in ALLOWED_SIDEWAYS:
                continue
            if LAYER[dest] >= LAYER[source]:
                found.append(f"{module} -> {target} ({source} must not import {dest})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
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


def test_no_import_points_up_or_sideways() -> None:
    assert layer_violations(project_graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(project_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"contracts.a": {"services.common.b"}, "services.common.b": set()}, 1),
        ({"services.gateway.a": {"services.notifier.b"}, "services.notifier.b": set()}, 1),
        ({"modal_workers.a": {"services.dispatcher.b"}, "services.dispatcher.b": set()}, 1),
        ({"services.dispatcher.a": {"modal_workers.b"}, "modal_workers.b": set()}, 0),
        ({"services.cli.a": {"services.gateway.b"}, "services.gateway.b": {"contracts.c"}, "contracts.c": set()}, 0),
    ],
)
def test_the_checker_sees_violations(graph: dict[str, set[str]], expected: int) -> None:
    assert len(layer_violations(graph)) == expected


def test_the_checker_sees_cycles() -> None:
    graph = {"m.a": {"m.b"}, "m.b": {"m.c"}, "m.c": {"m.a"}, "m.d": {"m.a"}}
    assert cycles(graph) == [["m.a", "m.b", "m.c"]]
