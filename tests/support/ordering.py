"""The order in which the parallel suite hands out its test files: the longest first, among files
of as many tests.

``pytest -n N --dist loadfile`` gives whole files to workers in collection order, which is by path. A
file's weight here is the longest time-out its tests declare (``@pytest.mark.timeout``, the suite's
default otherwise): a test given minutes is one that takes them. Heavier files go first, the rest
keep their order. xdist 3.8 then sorts the files by test count (its default ``--loadscope-reorder``),
so this order decides only among files with as many tests. ``--no-loadscope-reorder`` would apply
it in full; one fresh clone with it took 1041 s for the phase, within the 945-1062 s of four clones
without it (this 2-core machine, 3 workers), so xdist's default stays.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest


def declared_timeout(item: pytest.Item, default: float) -> float:
    """The time-out ``item`` declares (its closest ``timeout`` mark), or ``default``."""
    mark = item.get_closest_marker("timeout")
    if mark is None:
        return default
    value = mark.args[0] if mark.args else mark.kwargs.get("timeout", default)
    return float(value)


def longest_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reorder ``items`` by file, the file with the longest declared time-out first (stable); only in
    an xdist worker, where the order decides which worker gets which file when."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    default = float(config.getini("timeout") or 0)
    weight: dict[str, float] = defaultdict(float)
    for item in items:
        weight[file_of(item)] = max(weight[file_of(item)], declared_timeout(item, default))
    items.sort(key=lambda item: -weight[file_of(item)])


def file_of(item: pytest.Item) -> str:
    """The test file ``item`` belongs to (xdist's ``loadfile`` unit)."""
    return item.nodeid.split("::", 1)[0]
