"""The network-fault suite needs root (namespaces, veth, iptables): elsewhere it skips saying why,
and ``GPURELAY_REQUIRE_NETFAULTS=1`` (CI, ``.ci/run``) turns that skip into a failure.

``netfaults_long`` (the soak) runs only when asked for by name (``-m netfaults_long``, as ``make
bench`` does): it is deselected otherwise.
"""

from __future__ import annotations

import os

import pytest

from tests.support.netns.checker import Report
from tests.support.netns.clock import faketime_library
from tests.support.netns.commands import unavailable_reason

REQUIRED = os.environ.get("GPURELAY_REQUIRE_NETFAULTS") == "1"


def require_netns() -> None:
    """Skip (or, where required, fail) unless network namespaces can be made here."""
    reason = unavailable_reason()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"GPURELAY_REQUIRE_NETFAULTS=1 but {reason}")
        pytest.skip(reason)


def require_faketime() -> None:
    """Skip (or, where required, fail) unless libfaketime is installed."""
    if faketime_library() is None:
        reason = "libfaketime is not installed (Debian's faketime; make test installs it as root)"
        if REQUIRED:
            pytest.fail(f"GPURELAY_REQUIRE_NETFAULTS=1 but {reason}")
        pytest.skip(reason)


def assert_nothing_lost(report: Report) -> None:
    """The acceptance of every phase."""
    assert report.problems == []
    assert report.acknowledged > 0, "no submission was acknowledged: the load never ran"
    assert (report.lost, report.sse_gaps, report.webhooks_missing) == (0, 0, 0)
    assert report.terminal == report.acknowledged


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the soak unless ``-m`` names it."""
    if "netfaults_long" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("netfaults_long")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item not in soak]
