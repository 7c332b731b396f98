"""A splat session's resume: the Gaussians of a live PLY, fitted to the new attempt's trainer, render as
before, and the session's counters go on from the snapshot's state; the frames it trained on before the
snapshot, handed back as restored frames, return to the trainer's memory uncounted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from contracts.job_parts import Artifact
from contracts.specs.session_params import SplatParams
from modal_workers.runtime.session_frames import SessionFrame
from modal_workers.runtime.session_resume import ResumePoint
from modal_workers.splat.camera import Camera, Intrinsics
from modal_workers.splat.inputs import Posed
from modal_workers.splat.model import fitted
from modal_workers.splat.ply import to_ply_bytes
from modal_workers.splat.session import SplatSession
from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians, synthetic_rig
from modal_workers.splat.train import SplatConfig, SplatTrainer
from tests.workers.splat.support import random_gaussians

CONFIG = SplatConfig(near=0.1, far=0.4, max_gaussians=3000, sh_degree=0, backend="tiles", device="cpu")


class Ctx:
    """What a SplatSession needs of its context to be built (no run here)."""

    session: Any = None


class Views:
    """A frame source posing frame ``seq`` where the synthetic arm's camera is at ``seq / 10`` s, the scene's render."""

    def prepare(self, frame: SessionFrame) -> Posed:
        camera = Camera(Intrinsics.from_fov(24, 24, 60.0), synthetic_rig().camera_to_world(arm_angles(frame.seq / 10)))
        return Posed(frame.seq, render_frame(scene_gaussians(), camera), camera, "pose")


def frames(seqs: range, restored: bool) -> list[SessionFrame]:
    return [SessionFrame(seq, seq / 10, "image/png", b"", restored=restored) for seq in seqs]


def test_fitting_pads_or_cuts_the_sh_degree_and_keeps_the_most_opaque_within_the_budget() -> None:
    g = random_gaussians(50, sh_degree=1)
    g.opacity_logits[:] = torch.arange(50, dtype=torch.float32)
    cut = fitted(g, 0, 20)
    assert (cut.count, cut.sh_degree) == (20, 0)
    assert sorted(cut.opacity_logits.tolist()) == [float(i) for i in range(30, 50)]
    padded = fitted(random_gaussians(5, sh_degree=0), 2, 100)
    assert (padded.count, padded.sh_degree) == (5, 2)
    assert torch.count_nonzero(padded.sh_rest) == 0


def test_a_restored_session_renders_as_the_snapshot_and_counts_on() -> None:
    scene = scene_gaussians()
    view = Camera(Intrinsics.from_fov(40, 40, 60.0), synthetic_rig().camera_to_world(arm_angles(0.3)))
    state = {"reset_seq": 2, "resets": 1, "chunks": 3, "chunked": 150, "without_pose": 4, "invalid": 1,
             "held_out": 5, "steps": 900, "frames_received": 160, "frames_used": 150}  # fmt: skip
    ply = to_ply_bytes(scene)
    artifact = Artifact(name="live/1-splat.ply", key="k", size=len(ply))
    point = ResumePoint(number=7, snapshot=artifact, seq=162, frames_after=500, joints_after=90, results=0,
                        state=state)  # fmt: skip
    session = SplatSession(Ctx(), SplatTrainer(CONFIG), source=None, params=SplatParams())  # type: ignore[arg-type]
    session.restore(point, ply)
    reference = SplatTrainer(CONFIG)
    reference.restore(scene)
    assert np.array_equal(session.trainer.render(view), reference.render(view))
    assert session.trainer.render(view).max() > 0  # the scene is seen, not the background
    assert (session.frame_count, session.snapshots) == (160, 7)
    assert session.chunks == ["chunks/0001.ply", "chunks/0002.ply", "chunks/0003.ply"]
    assert session.resume_state() == state  # what it would carry on: the same, as nothing happened since
    assert session.trainer.model is not None
    assert session.trainer.model.count == scene.count


@pytest.mark.parametrize("ply", [None, to_ply_bytes(random_gaussians(0))])
def test_a_snapshot_without_gaussians_restores_an_untrained_model(ply: bytes | None) -> None:
    point = ResumePoint(number=1, snapshot=Artifact(name="live/1-splat.ply", key="k", size=0), seq=2,
                        frames_after=2, joints_after=0, results=0, state={"frames_received": 2})  # fmt: skip
    session = SplatSession(Ctx(), SplatTrainer(CONFIG), source=None, params=SplatParams())  # type: ignore[arg-type]
    session.restore(point, ply)
    assert session.trainer.model is None
    assert session.trainer.frames_received == 2


def test_restored_frames_return_to_the_trainers_memory_uncounted_and_new_frames_train_as_before() -> None:
    state = {"steps": 30, "frames_received": 5, "frames_used": 5, "held_out": 1}
    point = ResumePoint(number=2, snapshot=Artifact(name="live/0-splat.ply", key="k", size=0), seq=6,
                        frames_after=6, joints_after=0, results=0, state=state)  # fmt: skip
    params = SplatParams(holdout_every=4, steps_per_frame=3)
    session = SplatSession(Ctx(), SplatTrainer(CONFIG), Views(), params)  # type: ignore[arg-type]
    session.restore(point, to_ply_bytes(scene_gaussians()))
    trainer, gaussians = session.trainer, scene_gaussians().count
    session.take(frames(range(1, 7), restored=True))
    kept = trainer.frames.kept
    assert ([f.seq for f in kept], all(f.used for f in kept), session.restored) == ([1, 2, 3, 5, 6], True, 5)
    assert (trainer.frames_received, trainer.frames.added, session.frame_count, session.owed) == (5, 5, 6, 0)
    assert trainer.model is not None
    assert trainer.model.count == gaussians  # they grow nothing: the restored Gaussians cover them
    assert session.resume_state()["held_out"] == 1  # frame 4 was held out before; it is not counted again
    session.take(frames(range(7, 8), restored=False))
    assert (trainer.frames_received, session.frame_count, session.owed, len(kept)) == (6, 7, 3, 6)
    assert session.train(60.0) == 3
    assert (trainer.steps, trainer.frames_used) == (33, 6)  # only the new frame counts as newly used


def test_restored_frames_seed_a_model_the_snapshot_had_not_initialised() -> None:
    trainer = SplatTrainer(CONFIG)
    posed = [Views().prepare(frame) for frame in frames(range(1, CONFIG.init_frames + 1), restored=True)]
    trainer.put_back([(p.image, p.camera, p.seq) for p in posed])
    assert trainer.model is not None
    assert (trainer.frames_received, len(trainer.frames.kept)) == (0, CONFIG.init_frames)
