"""The layers hold: no import cycle, no arrow up or sideways between the packages, and the layout's limits.

``contracts`` ← ``services.common`` ← ``services.gateway`` · ``services.dispatcher`` ·
``services.notifier`` · ``modal_workers`` ← ``services.cli`` ← ``bench``. Packages on one floor never
import each other (the gateway and the notifier, the workers and any service but ``common``), with one
tie: the dispatcher's local pool runs the runtime's process body (``modal_workers.runtime.local_host``).
The sub-packages of one service are that service and may import each other. Within the workers, a
workload package never imports another workload package, and the runtime and the shared media code
never import a workload; the workloads are the folders of ``modal_workers`` other than those two, so a
new one is covered by being made. Nothing layered imports ``tests``. Every import counts, also those
inside functions and under ``TYPE_CHECKING``: a lazy import is still a tie.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contracts", "services", "modal_workers", "bench")
"""The layered packages; ``tests`` is read too, so that an import of it is seen."""

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

ALLOWED_SIDEWAYS = {("services.dispatcher.running.local_pool", "modal_workers.runtime.local_host")}
"""The one tie across a floor, module to module: the dispatcher's local pool runs the runtime's process body."""

SHARED_WORKER_PACKAGES = ("runtime", "media")
"""The folders of ``modal_workers`` that are not workloads: what runs a workload, and the shared video code."""

MAX_MODULES_PER_FOLDER = 15
MAX_TOP_WORKER_MODULES = 4
"""``modal_workers/`` holds ``__init__.py``, ``app.py`` and at most two more modules directly."""
MAX_SETTINGS_LINES = 250


def package_of(module: str) -> str | None:
    """The layered package a module belongs to (the longest matching prefix), or None."""
    best = None
    for name in LAYER:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def module_name(path: Path, root: Path = ROOT) -> str:
    """``services/gateway/app.py`` → ``services.gateway.app``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
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


def project_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module of a layered package → the project modules it imports (``tests`` ones included)."""
    files = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    modules = set(files) | {module_name(p, root) for p in (root / "tests").rglob("*.py")}
    return {module: set(imports_of(path, module, modules)) - {module} for module, path in files.items()}


def workload_packages(root: Path = ROOT) -> list[str]:
    """Every workload package: each folder of ``modal_workers`` with an ``__init__.py``, but the shared ones."""
    return sorted(
        f"modal_workers.{folder.name}"
        for folder in (root / "modal_workers").iterdir()
        if (folder / "__init__.py").is_file() and folder.name not in SHARED_WORKER_PACKAGES
    )


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that points up a floor or sideways between packages."""
    found = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        for target in sorted(targets):
            dest = package_of(target)
            if source is None or dest is None or source == dest or (module, target) in ALLOWED_SIDEWAYS:
                continue
            if LAYER[dest] >= LAYER[source]:
                found.append(f"{module} -> {target} ({source} must not import {dest})")
    return found


def _owner(module: str, packages: list[str]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def workload_violations(graph: dict[str, set[str]], workloads: list[str]) -> list[str]:
    """Each import of a workload package by another one, or by the runtime or the shared media code."""
    shared = [f"modal_workers.{name}" for name in SHARED_WORKER_PACKAGES]
    found = []
    for module, targets in sorted(graph.items()):
        source = _owner(module, workloads) or _owner(module, shared)
        if source is None:
            continue
        for target in sorted(targets):
            dest = _owner(target, workloads)
            if dest is not None and dest != source:
                found.append(f"{module} -> {target} ({source} must not import the workload {dest})")
    return found


def imports_of_tests(graph: dict[str, set[str]]) -> list[str]:
    """Each import of ``tests`` by a layered package (``bench`` included: what both share lives in bench)."""
    return [
        f"{module} -> {target} (only tests import tests)"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target == "tests" or target.startswith("tests.")
    ]


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


def crowded_folders(root: Path = ROOT) -> list[str]:
    """Each folder of ``services``, ``modal_workers`` or ``contracts`` holding too many modules directly."""
    found = []
    for top in ("services", "modal_workers", "contracts"):
        for folder in [root / top, *(p for p in (root / top).rglob("*") if p.is_dir())]:
            count = len(list(folder.glob("*.py")))
            if count > MAX_MODULES_PER_FOLDER:
                found.append(f"{folder.relative_to(root)}: {count} modules (at most {MAX_MODULES_PER_FOLDER})")
    top_workers = sorted(p.name for p in (root / "modal_workers").glob("*.py"))
    if len(top_workers) > MAX_TOP_WORKER_MODULES or not {"__init__.py", "app.py"} <= set(top_workers):
        found.append(f"modal_workers: {top_workers} (__init__.py, app.py and at most two more)")
    return found


def long_settings(root: Path = ROOT) -> list[str]:
    """Each settings module (``settings.py``, ``services/common/config.py``) over the line limit."""
    paths = [*root.glob("services/**/settings.py"), *root.glob("modal_workers/**/settings.py")]
    paths.append(root / "services" / "common" / "config.py")
    return [
        f"{path.relative_to(root)}: {lines} lines"
        for path in paths
        if path.is_file() and (lines := len(path.read_text().splitlines())) > MAX_SETTINGS_LINES
    ]


# The project as it is.


def test_no_import_points_up_or_sideways() -> None:
    assert layer_violations(project_graph()) == []


def test_no_workload_imports_another_and_the_runtime_and_media_import_none() -> None:
    workloads = workload_packages()
    assert {"modal_workers.lap_compare", "modal_workers.pose", "modal_workers.splat"} <= set(workloads)
    assert workload_violations(project_graph(), workloads) == []


def test_nothing_layered_imports_tests() -> None:
    assert imports_of_tests(project_graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(project_graph()) == []


def test_no_folder_is_crowded_and_the_workers_top_holds_the_app() -> None:
    assert crowded_folders() == []


def test_every_settings_module_is_short() -> None:
    assert long_settings() == []


# Each rule, on a planted violation: a synthetic graph, and a tree of files the checker reads.


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"contracts.a": {"services.common.b"}, "services.common.b": set()}, 1),
        ({"services.gateway.a": {"services.notifier.b"}, "services.notifier.b": set()}, 1),
        ({"services.notifier.sse.a": {"services.gateway.jobs.b"}, "services.gateway.jobs.b": set()}, 1),
        ({"modal_workers.a": {"services.dispatcher.b"}, "modal_workers.b": set()}, 1),
        ({"modal_workers.pose.a": {"services.gateway.settings"}}, 1),
        ({"services.dispatcher.a": {"modal_workers.b"}, "modal_workers.b": set()}, 1),
        ({"services.dispatcher.store": {"modal_workers.runtime.local_host"}}, 1),
        ({"services.dispatcher.running.local_pool": {"modal_workers.runtime.local_host"}}, 0),
        ({"services.dispatcher.fold.records": {"services.dispatcher.scheduling.queue"}}, 0),
        ({"services.cli.a": {"services.gateway.b"}, "services.gateway.b": {"contracts.c"}, "contracts.c": set()}, 0),
        ({"modal_workers.splat.workload": {"services.common.config", "contracts.runs"}}, 0),
    ],
)
def test_the_checker_sees_layer_violations(graph: dict[str, set[str]], expected: int) -> None:
    assert len(layer_violations(graph)) == expected


WORKLOADS = ["modal_workers.a", "modal_workers.b"]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"modal_workers.a.workload": {"modal_workers.b.model"}}, 1),
        ({"modal_workers.a": {"modal_workers.b"}}, 1),
        ({"modal_workers.runtime.worker_runtime": {"modal_workers.a.workload"}}, 1),
        ({"modal_workers.media.video": {"modal_workers.b"}}, 1),
        ({"modal_workers.a.workload": {"modal_workers.a.model", "modal_workers.runtime.context"}}, 0),
        ({"modal_workers.a.workload": {"modal_workers.media.video"}}, 0),
        ({"services.cli.a": {"modal_workers.a.workload", "modal_workers.b"}}, 0),
    ],
)
def test_the_checker_sees_workload_violations(graph: dict[str, set[str]], expected: int) -> None:
    assert len(workload_violations(graph, WORKLOADS)) == expected


def test_the_checker_sees_an_import_of_tests() -> None:
    graph = {"bench.soak": {"tests.support.soak", "bench.common"}, "bench.common": set(), "tests.x": {"bench.a"}}
    assert imports_of_tests(graph) == ["bench.soak -> tests.support.soak (only tests import tests)"]


def test_the_checker_sees_cycles() -> None:
    graph = {"m.a": {"m.b"}, "m.b": {"m.c"}, "m.c": {"m.a"}, "m.d": {"m.a"}}
    assert cycles(graph) == [["m.a", "m.b", "m.c"]]
    assert cycles({"m.a": {"m.b"}, "m.b": set()}) == []


def _plant(root: Path, files: dict[str, str]) -> Path:
    """A project tree under ``root``: every layered package and ``tests``, plus ``files``."""
    for folder in (*PACKAGES, "tests", "modal_workers/runtime", "modal_workers/media"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").touch()
    (root / "modal_workers" / "app.py").touch()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.parent.relative_to(root).parents:
            if parent != Path("."):
                (root / parent / "__init__.py").touch()
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_a_planted_tree_breaks_each_rule(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "contracts/ids.py": "def f():\n    from services.common import config  # lazy, still a tie\n",
            "services/common/config.py": "",
            "services/gateway/jobs/routes.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from services.notifier.sse import hub\n"
            ),
            "services/notifier/sse/hub.py": "from . import tap\n",
            "services/notifier/sse/tap.py": "from services.notifier.sse.hub import X\n",
            "modal_workers/pose/__init__.py": "from modal_workers.pose.workload import run\n",
            "modal_workers/pose/workload.py": "from modal_workers.splat import model\n",
            "modal_workers/splat/model.py": "import services.dispatcher.store\n",
            "modal_workers/runtime/worker_runtime.py": "from modal_workers.pose import run\n",
            "services/dispatcher/store.py": "",
            "bench/soak.py": "from tests.support import soak\n",
            "tests/support/soak.py": "",
        },
    )
    graph = project_graph(root)
    assert layer_violations(graph) == [
        "contracts.ids -> services.common.config (contracts must not import services.common)",
        "modal_workers.splat.model -> services.dispatcher.store (modal_workers must not import services.dispatcher)",
        "services.gateway.jobs.routes -> services.notifier.sse.hub "
        "(services.gateway must not import services.notifier)",
    ]
    assert workload_packages(root) == ["modal_workers.pose", "modal_workers.splat"]
    assert workload_violations(graph, workload_packages(root)) == [
        "modal_workers.pose.workload -> modal_workers.splat.model "
        "(modal_workers.pose must not import the workload modal_workers.splat)",
        "modal_workers.runtime.worker_runtime -> modal_workers.pose "
        "(modal_workers.runtime must not import the workload modal_workers.pose)",
    ]
    assert imports_of_tests(graph) == ["bench.soak -> tests.support.soak (only tests import tests)"]
    assert cycles(graph) == [["services.notifier.sse.hub", "services.notifier.sse.tap"]]


def test_a_planted_tree_breaks_the_layout_limits(tmp_path: Path) -> None:
    root = _plant(tmp_path, {f"services/gateway/m{i}.py": "" for i in range(15)})
    assert crowded_folders(root) == ["services/gateway: 16 modules (at most 15)"]
    (root / "modal_workers" / "video.py").touch()
    (root / "modal_workers" / "pose.py").touch()
    (root / "modal_workers" / "splat.py").touch()
    assert crowded_folders(root)[-1].startswith("modal_workers: ['__init__.py', 'app.py', 'pose.py'")
    assert long_settings(root) == []
    (root / "services" / "gateway" / "settings.py").write_text("x = 1\n" * 251)
    assert long_settings(root) == ["services/gateway/settings.py: 251 lines"]
