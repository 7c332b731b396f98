"""A splat session across a lost worker: what its live PLY snapshots carry, and how a later attempt goes on.

Every live PLY goes out with the session's counters as its resume state (:func:`resume_state`: the reset
and its seq, the chunks written and the frames they cover, the frames skipped, the trainer's steps and
frames). A later attempt (:func:`restore`) loads the Gaussians from that PLY, fitted to its own trainer
(the SH degree padded with zeros or cut, at most its Gaussian budget, the most opaque kept), and its
counters; the frames sent after the snapshot are replayed into it by the runtime. The optimiser's moments
and the frames the lost worker kept are not restored: the replayed and the live frames train from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from modal_workers.runtime.session_resume import ResumePoint
from modal_workers.splat.model import Gaussians
from modal_workers.splat.ply import read_ply

if TYPE_CHECKING:
    from modal_workers.splat.session import SplatSession


def resume_state(session: SplatSession) -> dict[str, Any]:
    """The counters a live PLY snapshot carries (JSON)."""
    trainer = session.trainer
    return {
        "reset_seq": session.reset_seq, "resets": session.resets, "chunks": len(session.chunks),
        "chunked": session.chunked, "without_pose": session.without_pose, "invalid": session.invalid,
        "steps": trainer.steps, "frames_received": trainer.frames_received, "frames_used": trainer.frames_used,
    }  # fmt: skip


def fitted(g: Gaussians, sh_degree: int, budget: int) -> Gaussians:
    """``g`` with ``sh_degree`` (higher coefficients cut, missing ones zero) and at most ``budget`` Gaussians."""
    rest = (sh_degree + 1) ** 2 - 1
    have = int(g.sh_rest.shape[1])
    if have > rest:
        g = Gaussians(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh_dc, g.sh_rest[:, :rest])
    elif have < rest:
        pad = torch.zeros(g.count, rest - have, 3, dtype=g.sh_rest.dtype)
        g = Gaussians(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh_dc, torch.cat([g.sh_rest, pad], 1))
    if g.count > budget:
        keep = torch.topk(g.opacity_logits, budget).indices.sort().values
        g = g.map(lambda t: t[keep])
    return g


def restore(session: SplatSession, point: ResumePoint, ply: bytes | None) -> None:
    """Go on from ``point`` (its snapshot's PLY ``ply``): the Gaussians into the trainer, the counters into
    the session."""
    state, config = point.state, session.trainer.config
    empty = Gaussians.empty(config.sh_degree)
    gaussians = fitted(read_ply(ply), config.sh_degree, config.max_gaussians) if ply else empty
    counts = (int(state.get(name, 0)) for name in ("steps", "frames_received", "frames_used"))
    session.trainer.restore(gaussians, *counts)
    session.last_seq, session.reset_seq = point.seq, int(state.get("reset_seq", 0))
    session.resets, session.chunked = int(state.get("resets", 0)), int(state.get("chunked", 0))
    session.chunks = [f"chunks/{number:04d}.ply" for number in range(1, int(state.get("chunks", 0)) + 1)]
    session.without_pose, session.invalid = int(state.get("without_pose", 0)), int(state.get("invalid", 0))
    session.snapshots = point.number
