"""A tiny live-session workload for the session tests (``bench.harness.session_echo:run``).

It echoes what it received: every frame's seq and matched joints as a ``session.result``, a JSON
snapshot every ``GPURELAY_TEST_SNAPSHOT_EVERY`` frames (default 2), a JSON "chunk" artifact
(``chunks/NNN.json``, as the splat workload exports chunk PLYs) every ``GPURELAY_TEST_CHUNK_EVERY``
frames (default 3), its counts as progress metrics, and on stop a result with every seq it processed
since the last reset. A reset clears its counts (chunks already exported stay).

It resumes (``run``): each snapshot carries its state (the seqs and joints echoed, resets, chunks), so a
later attempt after a lost worker goes on from the newest one; ``run_once`` is the same workload
without that declaration, which a lost worker fails. With ``GPURELAY_TEST_MARKS`` set it leaves
``{session id}.a{attempt}.{pid}`` there (holding the pid), so a test can kill it; with
``GPURELAY_TEST_READY_GATE=1`` too, it gets ready only once ``{session id}.go`` appears there (a
model that takes as long as the test wants to load).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.session_resume import resumable


@resumable
def run(spec: Any, ctx: Any) -> dict[str, Any]:
    """Echo frames until the session stops; resumes from its newest snapshot after a lost worker."""
    return echo(ctx)


def run_once(spec: Any, ctx: Any) -> dict[str, Any]:
    """Echo frames until the session stops; a lost worker fails the session."""
    return echo(ctx)


def echo(ctx: Any) -> dict[str, Any]:
    """The session's loop (see the module docstring)."""
    session: LiveSession = ctx.session
    if marks := os.environ.get("GPURELAY_TEST_MARKS"):
        (Path(marks) / f"{ctx.request.job_id}.a{ctx.attempt}.{os.getpid()}").write_text(str(os.getpid()))
    every = int(os.environ.get("GPURELAY_TEST_SNAPSHOT_EVERY", "2"))
    chunk_every = int(os.environ.get("GPURELAY_TEST_CHUNK_EVERY", "3"))
    state = session.resume_point.state if session.resume_point is not None else {}
    seqs: list[int] = list(state.get("seqs", []))
    joints: list[list[float] | None] = list(state.get("joints", []))
    resets, chunks = int(state.get("resets", 0)), int(state.get("chunks", 0))
    if marks and os.environ.get("GPURELAY_TEST_READY_GATE") == "1":
        gate(Path(marks) / f"{ctx.request.job_id}.go", ctx)
    session.ready()
    session.status(0.0, "ready", echoed=len(seqs), resets=resets, chunks=chunks)  # after the mark: a test may kill us
    while True:
        batch = session.poll(0.5)
        if batch.stop:
            break
        if batch.reset:
            seqs, joints, resets = [], [], resets + 1
            session.status(0.0, "reset", echoed=0, resets=resets, chunks=chunks)
            continue
        for frame in batch.frames:
            seqs.append(frame.seq)
            joints.append(frame.joints)
            session.result(frame.seq, frame.seq, text=f"frame {frame.seq}", joints=frame.joints, bytes=len(frame.data))
            if len(seqs) % chunk_every == 0:
                chunks += 1
                ctx.artifact(f"chunks/{chunks:03d}.json", json.dumps({"seqs": seqs}).encode(), "application/json")
            if len(seqs) % every == 0:
                body = json.dumps({"seqs": seqs, "resets": resets}).encode()
                now = {"seqs": seqs, "joints": joints, "resets": resets, "chunks": chunks}
                session.snapshot(body, seq=frame.seq, name="echo.json", content_type="application/json", state=now)
        if batch.frames:
            figures = {"echoed": len(seqs), "resets": resets, "chunks": chunks}
            session.status(min(1.0, len(seqs) / 100), f"{len(seqs)} frames", **figures)
    return {"seqs": seqs, "joints": joints, "resets": resets, "chunks": chunks, "stopped": batch.stop}


def gate(path: Path, ctx: Any, limit_s: float = 60.0) -> None:
    """Wait (at most ``limit_s``) until ``path`` exists, as a model loading would; a cancel ends the wait."""
    ends = time.monotonic() + limit_s
    while not path.exists() and time.monotonic() < ends:
        ctx.check_cancelled()
        time.sleep(0.05)
