"""The order the parallel suite hands out its test files: the longest first.

``pytest -n N --dist loadfile`` gives whole files to workers in collection order, which is by path, so
the heaviest files (``tests/workers``: splat and NeRF training) came last and one worker ran them alone
while the others had finished: the phase's tail. A file's weight is the longest time-out its tests
declare (``@pytest.mark.timeout``, the suite's default otherwise): a test given minutes is one that
takes them. Heavier files go first, the rest keep their order (longest processing time first).
xdist keeps that order only with ``--no-loadscope-reorder`` (the Makefile passes it): by default it
hands out the files with the most tests first, which put the one-test training files last again.
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
