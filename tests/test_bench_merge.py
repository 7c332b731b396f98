"""bench/run.py --only: the named modules' figures and notes (``name:``, ``name (``, ``name,``) replace theirs,
every other figure and note is kept."""

from __future__ import annotations

from bench.common import Result
from bench.run import merge


def test_a_partial_run_replaces_its_own_figures_and_notes_and_keeps_the_rest() -> None:
    old = [Result("sse p99", 3.0, "ms"), Result("platform: at rest", 31.0, "messages/s"), Result("x", 1.0, "s")]
    new = [Result("platform: at rest", 3.8, "messages/s"), Result("platform: memory", 354.0, "MB")]
    old_notes = [
        "sse: the notifier runs in its own process",
        "platform_cost: old words",
        "platform_cost, where the time goes: old",
        "platform_cost (a cut): old",
        "x: kept",
    ]
    results, notes = merge(old, old_notes, new, ["platform_cost: new words"], ["platform_cost"])
    assert [(r.name, r.value) for r in results] == [
        ("sse p99", 3.0),
        ("platform: at rest", 3.8),
        ("x", 1.0),
        ("platform: memory", 354.0),
    ]
    assert notes == ["sse: the notifier runs in its own process", "x: kept", "platform_cost: new words"]
