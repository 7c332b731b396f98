"""examples/live-splat-web in Debian's Chromium against the embedded stack: the page opens a ``splat``
session with a minted token, sends a video file's frames over the session socket (each acknowledged),
the real splat workload trains on the CPU, posed by the joint angles this test publishes for the robot
as its LeRobot loop would, and the page draws the live PLY and, after Stop, the final one. The API
key never reaches the page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from gpurelay_client import Client, JointPublisher

from modal_workers.splat.camera import Camera, CameraRig, Intrinsics
from modal_workers.splat.kinematics import synthetic_arm_urdf
from modal_workers.splat.synth import arm_angles, render_frame, scene_gaussians
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import open_example
from tests.support.lap import write_video

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
ROBOT, SIZE, FRAMES, FPS = "arm-web", 48, 12, 10


def wrist_video(path: Path) -> Path:
    """The synthetic scene seen from the synthetic arm's wrist camera along its trajectory (VP8 WebM)."""
    rig = CameraRig.from_urdf(synthetic_arm_urdf(), "camera_link")
    scene = scene_gaussians()
    views = (
        render_frame(scene, Camera(Intrinsics.from_fov(SIZE, SIZE, 60.0), rig.camera_to_world(arm_angles(i / FPS))))
        for i in range(FRAMES)
    )
    return write_video(path, (cv2.cvtColor(v, cv2.COLOR_RGB2BGR) for v in views), FPS, fourcc="VP80")


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


def text_number(app: Any, selector: str) -> int:
    return int(app.page.inner_text(selector))


def test_the_page_streams_a_video_file_into_a_live_splat(stack: ThreadedStack, chromium: Any, tmp_path: Path) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    video = wrist_video(tmp_path / "wrist.webm")
    with (
        Client(gateway, api_key=key) as client,
        client.robots.publisher(ROBOT) as arm,
        arm_moving(arm),
        open_example("live-splat-web", chromium, gateway, key) as app,
    ):
        app.page.set_input_files("#video-file", str(video))
        for field, value in (("#robot", ROBOT), ("#fps", str(FPS)), ("#width", str(SIZE)), ("#steps", "2")):
            app.page.fill(field, value)
        app.page.click("#start-file")
        app.page.wait_for_function(
            "(s => s.startsWith('Sent') || s.startsWith('Failed'))(document.getElementById('status').textContent)",
            timeout=120_000,
        )
        assert app.page.inner_text("#status").startswith("Sent"), app.errors
        sent, acks = text_number(app, "#sent"), text_number(app, "#acks")
        app.page.wait_for_function("Number(document.getElementById('ply-points').textContent) > 0", timeout=150_000)
        app.page.click("#stop")
        app.page.wait_for_function("document.getElementById('figures').dataset.state", timeout=120_000)
        final_points = text_number(app, "#ply-points")
        session_id = app.page.get_attribute("#figures", "data-session")
        app.assert_never_saw(key)
        assert app.errors == []
        assert session_id
        record = client.sessions.get(session_id)
    assert (record.status, record.robot_id) == ("succeeded", ROBOT)
    assert sent == acks == record.frames_received
    assert sent >= FRAMES  # every 1/FPS s of the file, each once
    assert record.result is not None
    assert final_points == record.result["gaussian_count"] > 0
    assert any(line.startswith("WS ") and f"/v1/sessions/{session_id}/stream" in line for line in app.traffic)
