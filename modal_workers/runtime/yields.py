"""What a generator workload may yield, and :func:`drive`, which calls a workload either way.

A workload is ``fn(spec, ctx) -> dict`` or a generator yielding :class:`Progress`, :class:`Log`,
:class:`ArtifactOut` and :class:`Result` (its return value, or the last :class:`Result`, is the
result); each yielded report goes through the same ``ctx`` methods a plain workload calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modal_workers.runtime.context import WorkerContext


@dataclass(frozen=True)
class Progress:
    """A yielded progress report (``fraction`` in 0..1)."""

    fraction: float
    message: str | None = None


@dataclass(frozen=True)
class Log:
    """A yielded log line."""

    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class ArtifactOut:
    """A yielded artifact: bytes or a local file, stored under the job's results."""

    name: str
    data: bytes | Path
    content_type: str | None = None


@dataclass(frozen=True)
class Result:
    """A yielded result (the last one wins; a generator's return value also counts)."""

    value: dict[str, Any] = field(default_factory=dict)


def drive(workload: Callable[..., Any], spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Call the workload; for a generator, act on each yielded report. The result dict."""
    value = workload(spec, ctx)
    if inspect.isgenerator(value) or isinstance(value, Iterator):
        return _consume(value, ctx)
    return dict(value or {})


def _consume(items: Iterator[Any], ctx: WorkerContext) -> dict[str, Any]:
    result: dict[str, Any] = {}
    while True:
        try:
            item = next(items)
        except StopIteration as stop:
            return dict(stop.value) if isinstance(stop.value, dict) else result
        ctx.check_cancelled()
        if isinstance(item, Progress):
            ctx.progress(item.fraction, item.message)
        elif isinstance(item, Log):
            ctx.log(item.message, item.level)
        elif isinstance(item, ArtifactOut):
            ctx.artifact(item.name, item.data, item.content_type)
        elif isinstance(item, Result):
            result = dict(item.value)
        else:
            raise TypeError(f"a workload may yield Progress, Log, ArtifactOut or Result, not {item!r}")
