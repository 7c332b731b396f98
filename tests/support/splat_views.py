"""The synthetic arm for the live-splat tests: its wrist camera's views of the synthetic scene (as a video
file, or as a Y4M clip for Chromium's fake camera) and its joint angles published as its loop would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from gpurelay_client import JointPublisher

from modal_workers.splat.camera import Camera, CameraRig, Intrinsics
from modal_workers.splat.kinematics import synthetic_arm_urdf
from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians
from tests.support.lap import write_video


def wrist_views(size: int, frames: int, fps: float) -> Iterator[np.ndarray[Any, Any]]:
    """The scene seen from the arm's wrist camera along its trajectory, ``size`` px square, BGR."""
    rig = CameraRig.from_urdf(synthetic_arm_urdf(), "camera_link")
    scene = scene_gaussians()
    for i in range(frames):
        pose = rig.camera_to_world(arm_angles(i / fps))
        view = render_frame(scene, Camera(Intrinsics.from_fov(size, size, 60.0), pose))
        yield cv2.cvtColor(view, cv2.COLOR_RGB2BGR)


def wrist_video(path: Path, size: int, frames: int, fps: int) -> Path:
    """:func:`wrist_views` as a VP8 WebM (what a user would pick as the video file)."""
    return write_video(path, wrist_views(size, frames, fps), fps, fourcc="VP80")


def wrist_y4m(path: Path, size: int, frames: int, fps: int) -> Path:
    """:func:`wrist_views` as an uncompressed 4:2:0 Y4M clip, which Chromium's fake camera
    (``--use-file-for-fake-video-capture``) plays in a loop as the camera's picture."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{size} H{size} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for view in wrist_views(size, frames, fps):
            out.write(b"FRAME\n" + cv2.cvtColor(view, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@contextmanager
def arm_moving(arm: JointPublisher) -> Iterator[None]:
    """The arm's joint angles published at 20 Hz (what its control loop does) while the block runs."""
    done = threading.Event()

    def loop() -> None:
        started = time.monotonic()
        while not done.wait(0.05):  # a control loop's period, not a wait for a result
            arm.publish(np.asarray(arm_angles(time.monotonic() - started)).tolist())

    thread = threading.Thread(target=loop, name="arm", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)
