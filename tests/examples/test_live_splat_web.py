"""examples/live-splat-web in Debian's Chromium against the embedded stack: the page opens a ``splat``
session with a minted token, sends a video file's frames over the session socket (each acknowledged),
the real splat workload trains on the CPU, posed by the joint angles this test publishes for the robot
as its LeRobot loop would, and the page draws the live PLY and, after Stop, the final one. The API
key never reaches the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gpurelay_client import Client

from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import open_example
from tests.support.splat_views import arm_moving, wrist_video

pytestmark = [browser_timeout(300), pytest.mark.slow]
ROBOT, SIZE, FRAMES, FPS = "arm-web", 48, 12, 10


def text_number(app: Any, selector: str) -> int:
    return int(app.page.inner_text(selector))


def test_the_page_streams_a_video_file_into_a_live_splat(stack: ThreadedStack, chromium: Any, tmp_path: Path) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    video = wrist_video(tmp_path / "wrist.webm", SIZE, FRAMES, FPS)
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
