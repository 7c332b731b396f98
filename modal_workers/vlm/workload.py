"""The ``vlm`` workload (``modal_workers.vlm:run``): a streaming VLM session on the live-session machinery.

1. **Model.** ``params.model``, else the deployment's default (``GPURELAY_VLM_MODEL``); a name not
   allowed (the default plus ``GPURELAY_VLM_MODELS``, never a server path) fails the session with
   ``model_not_allowed`` before anything loads. The gateway already refuses such a session at
   creation (422) when its settings hold the same lists, so this is the worker's own check, for a
   gateway configured otherwise. The model loads once per process (``load_model``; on Modal
   :func:`warm` does it in ``@modal.enter``), in the model thread
   (:class:`~modal_workers.vlm.runner.ChunkRunner`); the session is ``starting`` meanwhile and holds the
   frames sent to it. Once loaded (and, on a later attempt after a lost worker, the conversation
   restored: :mod:`modal_workers.vlm.resume`) it is ready (``session.ready``, progress ``ready``) and
   the held frames are chunked first.
2. **Frames.** This thread polls ``ctx.session`` and hands each frame to the
   :class:`~modal_workers.vlm.session.VlmSession` at once: chunks close at ``chunk_frames`` frames
   or ``chunk_seconds`` seconds; when the model falls behind, closed chunks coalesce (newest frames
   kept, the rest counted in ``frames_dropped``, at most ``3 × chunk_frames`` frames held). A reset
   clears the conversation; a stop, the idle timeout or the length limit ends the loop.
3. **Results.** The model thread runs each chunk and emits ``session.result`` ``{chunk, first_seq,
   last_seq, text, tokens, latency_ms}`` (``chunk`` numbers results from 1; ``latency_ms`` runs
   from the chunk's close to its answer; ``data``: ``images`` shown, frames ``covered``,
   ``coalesced``, ``context_turns`` carried in its prompt), ``session.alert`` when the answer
   matches ``params.alert``, and progress metrics (``chunks``, ``frames_dropped``, ``alerts``, …); then
   it snapshots the conversation (``conversation.json``), from which a lost worker's session resumes.
4. **End.** On a stop the open window closes and its chunk runs; the session then succeeds with a
   summary. A cancel ends it at once.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from contracts.events.sessions import MAX_RESULT_TEXT
from contracts.specs.jobs import VlmSpec
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.session_resume import resumable
from modal_workers.runtime.worker_runtime import PermanentError, WorkerContext
from modal_workers.vlm.chunker import Chunk
from modal_workers.vlm.model import load_model, model_settings, resolve_model
from modal_workers.vlm.resume import SNAPSHOT_NAME, conversation_json, restore, resume_state
from modal_workers.vlm.runner import ChunkRunner, ModelSlot, slow_model_delay_s
from modal_workers.vlm.session import ChunkOutcome, VlmSession

log = logging.getLogger(__name__)
POLL_S = 0.25
"""Longest wait for frames between two looks at the model thread's health."""
STATUS_EVERY_S = 1.0
"""Frame counts are reported at most this often between chunks."""
JSON = "application/json"


def warm() -> None:
    """Load the deployment's default model (Modal's ``@modal.enter``: once per container).

    A model that cannot load is left to the run, which fails the session with its error code.
    """
    try:
        load_model(model_settings()[0])
    except (PermanentError, ValueError):
        log.exception("the default VLM could not be loaded ahead of the first session")


def model_source(requested: str | None) -> tuple[str, str, float]:
    """The model to load for ``requested``, the name to report (a local directory is not shown) and
    the slow-model test delay (0 unless set)."""
    try:
        default, allowed = model_settings()
        delay = slow_model_delay_s()
    except ValueError as exc:
        raise PermanentError("vlm_settings_invalid", str(exc)) from None
    source = resolve_model(requested, default, allowed)
    shown = "deployment default" if source.startswith(("/", ".", "~")) or os.path.isdir(source) else source
    return source, shown + (f" (+{delay:g} s test delay)" if delay else ""), delay


@resumable
def run(spec: VlmSpec, ctx: WorkerContext) -> dict[str, Any]:
    """Serve one vlm session until it stops (see the module docstring); its summary."""
    live: LiveSession = ctx.session
    source, shown, delay = model_source(spec.params.model)
    slot = ModelSlot(delay)
    session = VlmSession(spec.params, slot)
    report = Reporter(live, session, shown)
    runner = ChunkRunner(session, slot, lambda: load_model(source), report.outcome)
    report.runner = runner
    live.status(0.0, "loading the model", **report.metrics())
    runner.start()
    try:
        runner.wait_loaded(ctx.check_cancelled)
        if live.resume_point is not None:
            report.tokens = restore(session, live.resume_point, live.resume_snapshot)
        live.ready()
        report.status("ready")
        stopped = serve(live, session, runner, report)
        session.finish()
        runner.drain(ctx.check_cancelled)
    finally:
        runner.close()
    live.status(1.0, f"stopped ({stopped})", **report.metrics())
    return report.summary(stopped)


def serve(live: LiveSession, session: VlmSession, runner: ChunkRunner, report: Reporter) -> str:
    """Frames into the session and resets into its conversation until the session stops; why it stopped."""
    while True:
        batch = live.poll(POLL_S)
        runner.raise_error()
        if batch.stop:
            return batch.stop
        if batch.reset:
            session.reset()
            report.status("reset")
            continue
        for frame in batch.frames:
            session.add_frame(frame.seq, frame.ts, frame.data)
            report.held()
        if batch.frames:
            runner.wake()
            report.status(f"{session.chunker.frames_received} frames", every_s=STATUS_EVERY_S)


class Reporter:
    """What the session tells its clients: results, alerts and progress metrics."""

    def __init__(self, live: LiveSession, session: VlmSession, model: str) -> None:
        self.live, self.session, self.model = live, session, model
        self.runner: ChunkRunner | None = None
        self.max_held = self.tokens = 0
        self.last_latency_ms: float | None = None
        self._last_status = 0.0

    def metrics(self) -> dict[str, Any]:
        """The session's figures (``frames_dropped``: frames merged away here; the input adds its own)."""
        s = self.session
        latency = {} if self.last_latency_ms is None else {"last_latency_ms": self.last_latency_ms}
        return {
            **s.stats(),
            **latency,
            "results": self.live.results,
            "frames_held": s.chunker.held_frames,
            "max_frames_held": self.max_held,
            "context_turns": len(s.conversation.turns),
            "context_tokens": s.conversation.tokens,
            "tokens": self.tokens,
            "model_busy_s": round(self.runner.busy_s, 3) if self.runner else 0.0,
            "model": self.model[:256],
        }

    def summary(self, stopped: str) -> dict[str, Any]:
        """The session's result: why it stopped, its figures, the input's counts, drops of both sides."""
        figures, counts = self.metrics(), self.live.input.stats()
        dropped = figures["frames_dropped"] + counts["frames_dropped"]
        return {"stopped": stopped, **figures, **counts, "frames_dropped": dropped}

    def held(self) -> None:
        """Remember the most frames held at once (the chunker's bound, observed)."""
        self.max_held = max(self.max_held, self.session.chunker.held_frames)

    def status(self, message: str, every_s: float = 0.0) -> None:
        """Progress with the metrics (at most once per ``every_s``)."""
        now = time.monotonic()
        if now - self._last_status >= every_s:
            self._last_status = now
            self.live.status(None, message, **self.metrics())

    def outcome(self, chunk: Chunk, outcome: ChunkOutcome) -> None:
        """One chunk's answer: ``session.result``, maybe ``session.alert``, then progress."""
        r = outcome.result
        text = str(r["text"])[:MAX_RESULT_TEXT]
        self.tokens += int(r["tokens"])
        self.last_latency_ms = float(r["latency_ms"])
        number = self.live.result(
            r["first_seq"], r["last_seq"], text=text, tokens=r["tokens"], latency_ms=r["latency_ms"],
            images=len(chunk.frames), covered=chunk.covered, coalesced=chunk.coalesced,
            context_turns=outcome.context_turns,
        )  # fmt: skip
        if (alert := outcome.alert) is not None:
            self.live.alert(
                number, r["first_seq"], r["last_seq"], pattern=alert["pattern"], message=alert["message"], text=text
            )
        state = resume_state(self.session, self.tokens)
        conversation = conversation_json(self.session)
        self.live.snapshot(conversation, seq=r["last_seq"], name=SNAPSHOT_NAME, content_type=JSON, state=state)
        self.status(f"chunk {number}")
