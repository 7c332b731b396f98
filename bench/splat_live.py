"""Live splat: the time from a frame's arrival at the worker to its first influence on a live PLY snapshot.

The real ``splat`` workload (:func:`modal_workers.splat.workload.run`) runs in a thread of this process on a
real :class:`~modal_workers.runtime.live_session.LiveSession`; a feeder thread hands its input what the
session feed would (a joint sample, then a :data:`SIZE` × :data:`SIZE` PNG frame of the synthetic arm's
wrist camera over a scene of known Gaussians) at :data:`FPS` frames/s for :data:`SECONDS` s, posed by
forward kinematics (the synthetic arm, as ``gpurelay dev`` sets). Storage and events stay in memory
(:class:`BenchHost`): the figure is the workload's own delay, not the transport's (bench/sessions.py
measures frame → worker).

A frame's first influence is the first ``session.snapshot`` whose ``seq`` reaches it: the workload
publishes a snapshot only after a training step, and every step renders the newest frame, so that
snapshot holds the frame's Gaussians and at least one step on it. The first :data:`WARMUP_FRAMES`
(initialisation, torch's first calls) are left out. The session's params are the defaults
(``snapshot_every_s`` 2 s unless ``BENCH_SPLAT_SNAPSHOT_S``, ``steps_per_frame`` 30): the figure is
bounded below by the snapshot period, which is the knob.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result

SIZE = 64
FPS = float(os.environ.get("BENCH_SPLAT_FPS", "10"))
SECONDS = float(os.environ.get("BENCH_SPLAT_SECONDS", "12"))
SNAPSHOT_EVERY_S = float(os.environ.get("BENCH_SPLAT_SNAPSHOT_S", "2.0"))
WARMUP_FRAMES = 10
NOTES = [
    f"splat live: the real workload in-process at {SIZE}x{SIZE}, {FPS:.0f} frames/s for {SECONDS:.0f} s with joint "
    f"samples (FK poses), default params but snapshot_every_s {SNAPSHOT_EVERY_S:g}; time from a frame's hand-over "
    f"to the worker's input to the first live PLY snapshot covering it (after {WARMUP_FRAMES} warm-up frames). "
    "Lower is better; the snapshot period bounds it (on average about half a period plus a training slice).",
]


class BenchHost:
    """What the workload uses of a worker context, in memory; snapshot events are timed."""

    def __init__(self, params: Any) -> None:
        from contracts.session_feed import FeedBacklog
        from modal_workers.runtime.live_session import LiveSession

        self.session = LiveSession(self, params, expects_joints=True)
        self.session.input.put(FeedBacklog(stream_seq=0))  # a feed opened on a session without frames yet
        self.snapshots: list[tuple[float, int]] = []
        self.chunks = 0

    def store(self, name: str, data: Any, content_type: str | None = None) -> Any:
        from contracts.job_parts import Artifact

        return Artifact(name=name, key=name, content_type=content_type or "application/octet-stream",
                        size=len(data), sha256="0" * 64)  # fmt: skip

    def artifact(self, name: str, data: Any, content_type: str | None = None) -> Any:
        self.chunks += name.startswith("chunks/")
        return self.store(name, data, content_type)

    def emit(self, type_: Any, payload: Any, name: str | None = None) -> None:
        if type_.value == "session.snapshot":
            self.snapshots.append((time.perf_counter(), payload.seq))

    def progress(self, fraction: float, message: str | None = None, metrics: Any = None) -> None:
        """Progress is not timed here."""

    def log(self, message: str, level: str = "info") -> None:
        """Logs are not kept."""

    def check_cancelled(self) -> None:
        """Never cancelled."""


def shots(count: int) -> list[tuple[list[float], bytes]]:
    """``count`` (joint sample, PNG frame) pairs along the synthetic arm's trajectory, 1 / FPS apart."""
    import cv2

    from modal_workers.splat.camera import Camera, CameraRig, Intrinsics
    from modal_workers.splat.kinematics import synthetic_arm_urdf
    from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians

    rig, scene = CameraRig.from_urdf(synthetic_arm_urdf(), "camera_link"), scene_gaussians()
    k = Intrinsics.from_fov(SIZE, SIZE, 60.0)
    out = []
    for i in range(count):
        angles = arm_angles(i / FPS)
        image = render_frame(scene, Camera(k, rig.camera_to_world(angles)))
        out.append((angles.tolist(), cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()))
    return out


def feed(host: BenchHost, frames: list[tuple[list[float], bytes]], arrivals: dict[int, float]) -> None:
    """Hand the frames to the session's input on schedule, then a stop."""
    from contracts.session_feed import FeedControl, FeedFrame, FeedJoints

    start, put = time.perf_counter(), host.session.input.put
    for i, (angles, png) in enumerate(frames):
        time.sleep(max(0.0, start + i / FPS - time.perf_counter()))
        ts = time.time()
        put(FeedJoints(ts=ts, joint_angles=angles, stream_seq=i + 1))
        arrivals[i + 1] = time.perf_counter()
        put(FeedFrame(seq=i + 1, ts=ts, content_type="image/png", stream_seq=i + 1), png)
    put(FeedControl(action="stop", stream_seq=len(frames) + 1))


def influence_ms(arrivals: dict[int, float], snapshots: list[tuple[float, int]]) -> list[float]:
    """Per frame after the warm-up: ms from its arrival to the first snapshot whose seq reaches it."""
    out = []
    for seq, arrived in arrivals.items():
        first = next((at for at, covered in snapshots if covered >= seq and at >= arrived), None)
        if seq > WARMUP_FRAMES and first is not None:
            out.append((first - arrived) * 1000)
    return out


def run() -> list[Result]:
    """Frame arrival → first influence on a snapshot, p50 and p95."""
    import numpy as np

    from contracts.specs.jobs import SplatSpec
    from modal_workers.splat import workload as splat

    spec = SplatSpec.model_validate({"kind": "splat", "params": {"snapshot_every_s": SNAPSHOT_EVERY_S}})
    host, arrivals = BenchHost(spec.params), dict[int, float]()
    frames = shots(int(FPS * SECONDS))
    before = os.environ.get("GPURELAY_SPLAT_URDF")
    os.environ["GPURELAY_SPLAT_URDF"] = before or "synthetic_arm.urdf"
    try:
        feeder = threading.Thread(target=feed, args=(host, frames, arrivals), daemon=True)
        feeder.start()
        result = splat.run(spec, host)
        feeder.join()
    finally:
        if before is None:
            del os.environ["GPURELAY_SPLAT_URDF"]
    latencies = influence_ms(arrivals, host.snapshots)
    label = f"{splat.backend(_cuda())} rasterizer, {SIZE}x{SIZE}, {FPS:.0f} fps, snapshot every {SNAPSHOT_EVERY_S:g} s"
    print(f"splat live: {len(latencies)} frames timed, {result['steps']} steps, {result['gaussian_count']} Gaussians")
    name = "splat live: frame arrival → first snapshot with it"
    return [
        Result(f"{name}, p50 ({label})", float(np.percentile(latencies, 50)), "ms"),
        Result(f"{name}, p95 ({label})", float(np.percentile(latencies, 95)), "ms"),
    ]


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
