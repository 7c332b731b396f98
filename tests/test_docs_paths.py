"""Every path and module the docs name exists, so the docs cannot drift from the tree.

Read: ``README.md``, ``BENCHMARKS.md``, ``docs/*.md`` and each service's ``README.md``. Checked: each path under
``services/``, ``modal_workers/``, ``contracts/``, ``tests/`` or ``bench/`` (a file or a folder); each
dotted name under those packages, down to the module it names and the first name in that module
(``services.common.nats.connection.apply_declarations``); and, in a service's README, each backticked
``x.py`` or ``sub/x.py`` without a top folder, which is read from the service's own folder.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("services", "modal_workers", "contracts", "tests", "bench")
PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(TOPS) + r")/[\w./*-]*[\w*/])")
DOTTED = re.compile(r"(?<![\w./-])((?:" + "|".join(TOPS) + r")(?:\.\w+)+)")
LOCAL_MODULE = re.compile(r"`((?:\w+/)*\w+\.py)`")


def documents(root: Path = ROOT) -> list[Path]:
    """The Markdown the checks read."""
    docs = [root / "README.md", root / "BENCHMARKS.md", *sorted((root / "docs").glob("*.md"))]
    return [path for path in docs if path.is_file()] + sorted(root.glob("services/*/README.md"))


def path_exists(root: Path, text: str) -> bool:
    """A path, a folder (trailing ``/``) or a glob (``services/common/**``) that matches something."""
    text = text.rstrip("/")
    if any(c in text for c in "*?["):
        return any(root.glob(text))
    return (root / text).exists()


@cache
def _top_names(path: Path) -> frozenset[str]:
    """The names a module defines or imports at its top level (what ``module.NAME`` may name)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return frozenset(names)


def dotted_exists(root: Path, name: str) -> bool:
    """``a.b.c.NAME.attr``: the longest prefix that is a module or package, then a name it defines."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if base.is_dir() and not module.exists():
            return cut == len(parts)  # a folder without __init__ (``tests/fixtures``) is named whole
        if module.exists():
            rest = parts[cut:]
            return not rest or rest[0] in _top_names(module)
    return False


def stale_references(root: Path = ROOT) -> list[str]:
    """Each path or dotted name in the docs that names nothing in the tree."""
    found = []
    for doc in documents(root):
        text = doc.read_text()
        where = doc.relative_to(root)
        for match in PATH.finditer(text):
            if not path_exists(root, match.group(1)):
                found.append(f"{where}: {match.group(1)}")
        for match in DOTTED.finditer(text):
            name = match.group(1)
            if not dotted_exists(root, name) and not path_exists(root, name.replace(".", "/")):
                found.append(f"{where}: {name}")
        if doc.parent.parent == root / "services":
            for match in LOCAL_MODULE.finditer(text):
                local = match.group(1)
                if not local.startswith(TOPS) and not (doc.parent / local).exists():
                    found.append(f"{where}: {local} (in {doc.parent.relative_to(root)})")
    return found


def test_every_path_and_module_in_the_docs_exists() -> None:
    assert stale_references() == []


@pytest.mark.parametrize(
    ("text", "stale"),
    [
        ("see `services/dispatcher/queue.py`", ["README.md: services/dispatcher/queue.py"]),
        ("see `services/dispatcher/scheduling/queue.py` and services/dispatcher/", []),
        ("`services.dispatcher.scheduling.queue.QueueIndex` and `modal_workers.pose:run`", []),
        ("`services.dispatcher.queue.QueueIndex`", ["README.md: services.dispatcher.queue.QueueIndex"]),
        (
            "`services.dispatcher.scheduling.queue.NoSuchThing`",
            ["README.md: services.dispatcher.scheduling.queue.NoSuchThing"],
        ),
        ("paths: `services/dispatcher/**` and `modal_workers/**`", []),
        ("paths: `services/nothing/**`", ["README.md: services/nothing/**"]),
    ],
)
def test_the_check_sees_a_stale_reference(tmp_path: Path, text: str, stale: list[str]) -> None:
    (tmp_path / "docs").mkdir()
    for module in ("services/dispatcher/scheduling/queue.py", "modal_workers/pose/__init__.py"):
        path = tmp_path / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("class QueueIndex:\n    pass\n\n\ndef run():\n    pass\n")
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path("."):
                (tmp_path / parent / "__init__.py").touch()
    (tmp_path / "README.md").write_text(text)
    assert stale_references(tmp_path) == stale


def test_the_check_reads_a_services_readme_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("")
    (tmp_path / "services" / "notifier" / "sse").mkdir(parents=True)
    (tmp_path / "services" / "notifier" / "sse" / "hub.py").touch()
    (tmp_path / "services" / "notifier" / "README.md").write_text("| `sse/hub.py` | `hub.py` | `tap.py` |")
    assert stale_references(tmp_path) == [
        "services/notifier/README.md: hub.py (in services/notifier)",
        "services/notifier/README.md: tap.py (in services/notifier)",
    ]
