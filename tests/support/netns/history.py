"""The history of a fault run: every client operation's invocation and completion (Jepsen's idea).

An :class:`Op` is invoked, then completes ``ok`` (the service said it is done: a 201, a 202),
``fail`` (the service said it was not done: a 4xx) or ``unknown`` (no answer, a timeout, a 5xx: it
may or may not have happened). After the faults heal, the checker reads everything back: an ``ok``
must never be lost, an ``unknown`` may go either way. Times are seconds on the monotonic clock
since the history began; each op carries the phase (the fault) it was invoked in.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "fail", "unknown"]


@dataclass
class Op:
    """One operation of one client process."""

    process: str
    f: str
    """What it does: ``submit``, ``frame``, ``joints``, ``session``."""
    phase: str
    invoked: float
    key: str = ""
    """What makes it one operation however often it is sent (an ``Idempotency-Key``, a session id)."""
    completed: float | None = None
    outcome: Outcome | None = None
    value: Any = None
    """What the service answered: a job id, a frame's seq, an error."""


@dataclass
class History:
    """Every op, in invocation order; ``phase`` is stamped on each new one."""

    ops: list[Op] = field(default_factory=list)
    phase: str = ""
    began: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)
    """Named moments (``{phase}:fault``, ``{phase}:heal``...), same clock as the ops."""

    def now(self) -> float:
        """Seconds since the history began."""
        return time.monotonic() - self.began

    def invoke(self, process: str, f: str, key: str = "") -> Op:
        """Record that ``process`` invokes ``f`` now."""
        op = Op(process, f, self.phase, self.now(), key)
        self.ops.append(op)
        return op

    def complete(self, op: Op, outcome: Outcome, value: Any = None) -> Op:
        """Record how ``op`` completed, now."""
        op.completed, op.outcome, op.value = self.now(), outcome, value
        return op

    def mark(self, name: str) -> float:
        """Name this moment (``{phase}:{name}``)."""
        self.marks[f"{self.phase}:{name}"] = at = self.now()
        return at

    def of(self, f: str, phase: str | None = None, outcome: Outcome | None = None) -> list[Op]:
        """The ops doing ``f`` (of ``phase``, completed as ``outcome``, when given)."""
        return [
            op for op in self.ops
            if op.f == f and (phase is None or op.phase == phase) and (outcome is None or op.outcome == outcome)
        ]  # fmt: skip

    def acknowledged_jobs(self, phase: str | None = None) -> list[str]:
        """The job ids of every submission answered 201 (of ``phase``)."""
        return [str(op.value) for op in self.of("submit", phase, "ok")]

    def dump(self, path: Path) -> None:
        """Write the history as JSON (ops and marks), for a look after the run."""
        ops = [asdict(op) for op in self.ops]
        path.write_text(json.dumps({"marks": self.marks, "ops": ops}, indent=1, default=str))
