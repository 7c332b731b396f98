"""The no-op workload of the dispatch benchmarks, in a module of its own: a pool process imports
only this for it (importing ``bench.dispatch`` would load the gateway and the dispatcher, a second
or more of start-up on the first attempt each process runs)."""

from __future__ import annotations

from typing import Any


def noop(spec: Any, ctx: Any) -> dict[str, Any]:
    """Return at once: the attempt costs only the platform's own work."""
    return {}
