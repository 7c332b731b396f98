"""One live splat session's state between polls: frames taken, steps owed, chunks, snapshots, status.

The ``splat`` workload (:mod:`modal_workers.splat.workload`) owns one :class:`SplatSession` per run and calls,
after each poll of ``ctx.session``: :meth:`~SplatSession.take` (the frames: posed by
:class:`~modal_workers.splat.inputs.FrameSource`, added to the trainer, each used frame owing
``steps_per_frame`` steps, at most ``steps_per_frame × frame_buffer`` owed), :meth:`~SplatSession.train`
(owed steps until a time slice ends, so polls stay frequent), :meth:`~SplatSession.tick` (the live PLY
every ``snapshot_every_s`` once a step changed the model; progress at most every
:data:`STATUS_EVERY_S`), :meth:`~SplatSession.reset` and :meth:`~SplatSession.finish`.

Frames are counted by ``seq`` since the last reset (``frame_count``: received, dropped and skipped
alike, as the seed counted uploads). After every ``chunk_every``-th of them the whole model is written as
``chunks/NNNN.ply`` (a ``job.artifact``, numbered across resets, never overwritten) and
``status.json`` is rewritten and announced. A reset clears the model and the counters and publishes
an empty live PLY; the chunk numbering goes on. Stop writes the last chunk (frames since the previous
one), the final PLY and a complete ``status.json``; the result is
``{frame_count, gaussian_count, chunks, psnr, ...}``.

Each live PLY carries the session's counters (:meth:`~SplatSession.resume_state`), so that a later attempt
after a lost worker goes on from it (:meth:`~SplatSession.restore`): the Gaussians of that PLY fitted to
its own trainer (SH degree, Gaussian budget) and the counters; the runtime replays the frames sent after
the snapshot. Each snapshot also names its memory (the newest ``memory`` frames it covers): the runtime
hands them to the later attempt first as ``restored`` frames, which go back into the trainer's frame
memory uncounted (:meth:`SplatTrainer.put_back`), so it trains on the views it had rather than only on
the frames after the snapshot. The optimiser's moments are not restored.

Progress ``fraction`` is frames received over two chunks' worth, capped at 1 (the seed's scale:
0.5 at 50 frames); its metrics are the names the seed's ``/status`` reads (``gaussians``, ``chunks``,
``reset_seq``) and the training figures (``steps``, ``loss``, ``psnr``, ``frames_used`` …).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from contracts.events.jobs import JobArtifactPayload
from contracts.events.registry import EventType
from contracts.specs.session_params import SplatParams
from modal_workers.runtime.session_frames import SessionFrame
from modal_workers.runtime.session_resume import ResumePoint
from modal_workers.splat.inputs import FrameSource, Skipped
from modal_workers.splat.model import Gaussians, fitted
from modal_workers.splat.ply import read_ply
from modal_workers.splat.train import SplatStats, SplatTrainer

PLY_TYPE = "application/octet-stream"
STATUS_EVERY_S = 0.5
"""Progress goes out at most this often (and only when something changed)."""
PSNR_EVERY_S = 2.0
"""The PSNR estimate (renders of the newest views) is refreshed at most this often."""


class SplatSession:
    """A session's training, outputs and counters (see the module docstring). ``ctx``: the worker context."""

    def __init__(
        self, ctx: Any, trainer: SplatTrainer, source: FrameSource, params: SplatParams,
        clock: Callable[[], float] = time.monotonic, *, memory: int = 0,
    ) -> None:  # fmt: skip
        self.ctx, self.live, self.trainer, self.source, self.params = ctx, ctx.session, trainer, source, params
        self.clock, self.memory, self.restored = clock, memory, 0
        self.chunks: list[str] = []
        self.resets = self.reset_seq = self.last_seq = 0
        self.snapshots = self.status_files = 0
        self.snapshot_now = False
        self._start_counters()
        self.last_snapshot = self.last_status = self.last_psnr_at = float("-inf")
        self.psnr: float | None = None

    def _start_counters(self) -> None:
        self.chunked = 0  # frames since the reset that the chunks written since then cover
        self.without_pose = self.invalid = self.held_out = 0
        self.owed = self.steps_since_snapshot = 0
        self.why: str | None = None
        self.dirty = True

    @property
    def frame_count(self) -> int:
        """Frames received since the last reset (by seq)."""
        return self.last_seq - self.reset_seq

    @property
    def wants_steps(self) -> bool:
        """Whether owed steps can run now (the caller should not wait for frames)."""
        return self.owed > 0 and self.trainer.model is not None

    # -- input --------------------------------------------------------------------------------------
    def take(self, frames: list[SessionFrame]) -> None:
        """Pose each frame and add it to the model (or count why not); after the frame that completes a
        chunk's worth, write the chunk. Restored frames (a resumed session's memory) go back uncounted."""
        self._put_back([frame for frame in frames if frame.restored])
        for frame in (frame for frame in frames if not frame.restored):
            self._take_one(frame)
            every = self.params.chunk_every
            if self.frame_count >= self.chunked + every:
                self._write_chunk(self.frame_count - self.frame_count % every)
        self.dirty = self.dirty or bool(frames)

    def _put_back(self, frames: list[SessionFrame]) -> None:
        every, posed = self.params.holdout_every, []
        for frame in frames:
            prepared = None if every is not None and frame.seq % every == 0 else self.source.prepare(frame)
            if prepared is not None and not isinstance(prepared, Skipped):  # held out or unposed: as before
                posed.append((prepared.image, prepared.camera, prepared.seq))
        if posed:
            self.trainer.put_back(posed)
            self.restored += len(posed)

    def _take_one(self, frame: SessionFrame) -> None:
        self.last_seq = max(self.last_seq, frame.seq)
        every = self.params.holdout_every
        if every is not None and frame.seq % every == 0:
            self.held_out += 1  # kept out of training: it scores the final model (a replay's comparison)
            return
        prepared = self.source.prepare(frame)
        if isinstance(prepared, Skipped):
            self.invalid += prepared.kind == "invalid"
            self.without_pose += prepared.kind == "no_pose"
            self.why = prepared.reason
            return
        self.trainer.add_frame(prepared.image, prepared.camera, seq=prepared.seq)
        per_frame = self.params.steps_per_frame
        self.owed = min(self.owed + per_frame, per_frame * self.params.frame_buffer)

    # -- training -----------------------------------------------------------------------------------
    def train(self, slice_s: float) -> int:
        """Owed steps until ``slice_s`` seconds have passed; how many ran."""
        ends, ran = self.clock() + slice_s, 0
        while self.wants_steps and (ran == 0 or self.clock() < ends):
            self.trainer.step(1)
            self.owed -= 1
            ran += 1
        self.steps_since_snapshot += ran
        self.dirty = self.dirty or ran > 0
        return ran

    # -- outputs ------------------------------------------------------------------------------------
    def tick(self) -> None:
        """The live PLY and progress, when due."""
        now = self.clock()
        changed = self.steps_since_snapshot > 0
        if self.snapshot_now or (changed and now - self.last_snapshot >= self.params.snapshot_every_s):
            self._snapshot(now)
        if self.dirty and now - self.last_status >= STATUS_EVERY_S:
            self.status(now)

    def _snapshot(self, now: float) -> None:
        ply, state = self.trainer.to_ply(), self.resume_state()
        self.live.snapshot(
            ply, seq=self.last_seq, name="splat.ply", content_type=PLY_TYPE, state=state, memory=self.memory
        )
        self.last_snapshot, self.steps_since_snapshot, self.snapshot_now = now, 0, False
        self.snapshots += 1

    def resume_state(self) -> dict[str, Any]:
        """The counters a live PLY snapshot carries (JSON), from which a later attempt goes on."""
        trainer = self.trainer
        return {
            "reset_seq": self.reset_seq, "resets": self.resets, "chunks": len(self.chunks),
            "chunked": self.chunked, "without_pose": self.without_pose, "invalid": self.invalid,
            "held_out": self.held_out, "steps": trainer.steps, "frames_received": trainer.frames_received,
            "frames_used": trainer.frames_used,
        }  # fmt: skip

    def restore(self, point: ResumePoint, ply: bytes | None) -> None:
        """Go on from ``point`` (its snapshot's PLY ``ply``): the Gaussians into the trainer, the counters here."""
        state, config = point.state, self.trainer.config
        empty = Gaussians.empty(config.sh_degree)
        gaussians = fitted(read_ply(ply), config.sh_degree, config.max_gaussians) if ply else empty
        counts = (int(state.get(name, 0)) for name in ("steps", "frames_received", "frames_used"))
        self.trainer.restore(gaussians, *counts)
        self.last_seq, self.reset_seq = point.seq, int(state.get("reset_seq", 0))
        self.resets, self.chunked = int(state.get("resets", 0)), int(state.get("chunked", 0))
        self.chunks = [f"chunks/{number:04d}.ply" for number in range(1, int(state.get("chunks", 0)) + 1)]
        self.without_pose, self.invalid = int(state.get("without_pose", 0)), int(state.get("invalid", 0))
        self.held_out, self.snapshots = int(state.get("held_out", 0)), point.number

    def status(self, now: float | None = None) -> None:
        """Report progress with the session's figures now."""
        self.last_status, self.dirty = self.clock() if now is None else now, False
        fraction = min(1.0, self.frame_count / (2 * self.params.chunk_every))
        fresh = self.last_status - self.last_psnr_at >= PSNR_EVERY_S
        stats = self.trainer.stats(psnr=fresh)
        if fresh:
            self.psnr, self.last_psnr_at = stats.psnr, self.last_status
        line = f"{self.frame_count} frames, {stats.frames_used} used, {stats.gaussians} Gaussians, {stats.steps} steps"
        message = line if self.why is None else f"{line}; skipped: {self.why}"
        self.live.status(fraction, message, **self.metrics(stats))

    def metrics(self, stats: SplatStats) -> dict[str, Any]:
        """The progress figures (names read by the seed's /status: gaussians, chunks, reset_seq)."""
        figures: dict[str, Any] = {
            "frame_count": self.frame_count, "frames_used": stats.frames_used, "frames_kept": stats.frames_kept,
            "frames_without_pose": self.without_pose, "frames_invalid": self.invalid, "frames_held_out": self.held_out,
            "gaussians": stats.gaussians,
            "steps": stats.steps, "chunks": len(self.chunks), "snapshots": self.snapshots, "resets": self.resets,
            "reset_seq": self.reset_seq, "last_seq": self.last_seq, "frames_restored": self.restored,
        }  # fmt: skip
        if stats.loss is not None:
            figures["loss"] = round(stats.loss, 6)
        if self.psnr is not None:
            figures["psnr"] = round(self.psnr, 3)
        return figures

    def _write_chunk(self, covered: int) -> None:
        """The whole model as the next chunk; ``covered``: the frames since the reset it accounts for."""
        name = f"chunks/{len(self.chunks) + 1:04d}.ply"
        self.ctx.artifact(name, self.trainer.to_ply(), PLY_TYPE)
        self.chunks.append(name)
        self.chunked = covered
        self._write_status_file(complete=False)
        self.dirty = True

    def status_document(self, complete: bool) -> dict[str, Any]:
        """What ``status.json`` holds (the seed's R2 ``status.json``, plus the training figures)."""
        stats = self.trainer.stats(psnr=False)
        return {
            "chunks": list(self.chunks), "complete": complete, "frame_count": self.frame_count,
            "frames_used": stats.frames_used, "frames_without_pose": self.without_pose,
            "gaussian_count": stats.gaussians, "steps": stats.steps, "resets": self.resets, "last_seq": self.last_seq,
        }  # fmt: skip

    def _write_status_file(self, complete: bool) -> None:
        data = json.dumps(self.status_document(complete), indent=1).encode()
        if complete:
            self.ctx.artifact("status.json", data, "application/json")
            return
        self.status_files += 1  # announced under its own event id each time: the record keeps the latest
        artifact = self.ctx.store("status.json", data, "application/json")
        payload = JobArtifactPayload.model_validate(artifact.model_dump())
        self.ctx.emit(EventType.JOB_ARTIFACT, payload, f"art-status-{self.status_files}")

    # -- control ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear the model and the counters; the chunk numbering goes on."""
        self.trainer.reset()
        self.psnr, self.last_psnr_at = None, float("-inf")
        self.resets += 1
        self.reset_seq = self.last_seq
        self._start_counters()
        self.snapshot_now = True  # the live PLY shows the cleared model at once

    def finish(self, stopped: str) -> dict[str, Any]:
        """The last chunk, the final PLY, a complete ``status.json``, the last progress; the result."""
        if self.frame_count > self.chunked:
            self._write_chunk(self.frame_count)
        self._snapshot(self.clock())
        self._write_status_file(complete=True)
        self.last_psnr_at = float("-inf")
        self.status()  # with a fresh PSNR
        stats = self.trainer.stats(psnr=False)
        return {
            "frame_count": self.frame_count, "gaussian_count": stats.gaussians, "chunks": list(self.chunks),
            "psnr": None if self.psnr is None else round(self.psnr, 3), "frames_used": stats.frames_used,
            "frames_without_pose": self.without_pose, "frames_invalid": self.invalid, "frames_held_out": self.held_out,
            "steps": stats.steps, "resets": self.resets, "stopped": stopped,
        }  # fmt: skip
