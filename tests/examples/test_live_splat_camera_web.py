"""examples/live-splat-web's camera path and its Reset button, in Debian's Chromium against the embedded
stack. Chromium's fake camera plays a Y4M clip of the synthetic arm's wrist views; the page streams it
(``Stream the camera``) into a ``splat`` session over the session socket, posed by the joint angles this
test publishes, until a live PLY appears. Reset then reaches the worker: its progress (read on the
session's event stream) counts the reset and restarts the frame count, and frames keep flowing after it.
Stop ends the session with every frame the page sent acknowledged and received. The API key never
reaches the page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from gpurelay_client import Client

from tests.support.browser import browser_timeout, launch_chromium
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import open_example
from tests.support.splat_views import arm_moving, wrist_y4m

pytestmark = [browser_timeout(300), pytest.mark.slow]
ROBOT, SIZE, FRAMES, FPS = "arm-cam", 48, 12, 10
FIRST_FRAMES = 5
"""Frames the page has had acknowledged before Reset (so the reset has a count to restart)."""
RESET_WAIT_S = 120.0


@pytest.fixture
def camera_chromium(chromium: Any, tmp_path: Path) -> Iterator[Any]:
    """A second Chromium (on the package's Playwright) whose camera is the wrist clip, allowed without asking."""
    clip = wrist_y4m(tmp_path / "wrist.y4m", SIZE, FRAMES, FPS)
    fake_camera = (
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    )
    with closing(launch_chromium(chromium.browser_type, *fake_camera)) as browser:
        yield browser


def number(app: Any, selector: str) -> int:
    return int(app.page.inner_text(selector))


def wait_for_number_above(app: Any, selector: str, floor: int, timeout_ms: float) -> int:
    """Wait (on the page) until the number in ``selector`` exceeds ``floor``; that number."""
    script = f"Number(document.querySelector({selector!r}).textContent) > {floor}"
    app.page.wait_for_function(script, timeout=timeout_ms)
    return number(app, selector)


def reset_progress(client: Client, session_id: str, timeout_s: float) -> dict[str, Any]:
    """The metrics of the session's first progress event after the worker's reset (its events from the
    start, as they come: progress goes out every half second while frames arrive)."""
    deadline = time.monotonic() + timeout_s
    for event in client.jobs.stream(session_id):
        assert time.monotonic() < deadline, f"no progress with a reset within {timeout_s} s"
        metrics = dict(getattr(event.data, "metrics", None) or {}) if event.type == "job.progress" else {}
        if int(metrics.get("resets", 0)) >= 1:
            return metrics
        assert not event.terminal, f"the session ended ({event.type}) before the worker reset"
    raise AssertionError("the event stream ended before the worker reset")


def test_the_page_streams_the_camera_and_resets_the_splat(
    stack: ThreadedStack, camera_chromium: Any, tmp_path: Path
) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    with (
        Client(gateway, api_key=key) as client,
        client.robots.publisher(ROBOT) as arm,
        arm_moving(arm),
        open_example("live-splat-web", camera_chromium, gateway, key) as app,
    ):
        for field, value in (("#robot", ROBOT), ("#fps", str(FPS)), ("#width", str(SIZE)), ("#steps", "2")):
            app.page.fill(field, value)
        app.page.click("#start-camera")
        app.page.wait_for_function("document.getElementById('figures').dataset.session", timeout=120_000)
        session_id = str(app.page.get_attribute("#figures", "data-session"))
        assert app.page.is_disabled("#start-camera")  # one camera loop: a second click cannot start another
        acked = wait_for_number_above(app, "#acks", FIRST_FRAMES - 1, 120_000)
        assert client.sessions.get(session_id).frames_received >= acked  # the camera's frames reached it
        wait_for_number_above(app, "#ply-points", 0, 150_000)  # the worker trained on them: a live PLY
        app.page.click("#reset")
        after_reset = reset_progress(client, session_id, RESET_WAIT_S)
        wait_for_number_above(app, "#acks", number(app, "#acks"), 60_000)  # the camera goes on after Reset
        app.page.click("#stop")
        app.page.wait_for_function("document.getElementById('figures').dataset.state", timeout=120_000)
        sent, acks, status = number(app, "#sent"), number(app, "#acks"), app.page.inner_text("#status")
        assert [app.page.is_disabled(b) for b in ("#reset", "#stop")] == [True, True]  # the session has ended
        app.assert_never_saw(key)
        assert app.errors == []
        record = client.sessions.get(session_id)
    assert status == "Session succeeded", status
    assert (record.status, record.robot_id) == ("succeeded", ROBOT)
    assert after_reset["resets"] == 1
    assert after_reset["reset_seq"] >= acked  # the frames before Reset were counted, then the count restarted
    assert after_reset["frame_count"] == after_reset["last_seq"] - after_reset["reset_seq"]
    assert sent == acks == record.frames_received  # every camera frame, the one in flight at Stop too
    assert record.result is not None
    assert record.result["resets"] == 1
    assert record.result["frame_count"] == record.frames_received - after_reset["reset_seq"] > 0
    assert any(line.startswith("WS ") and f"/v1/sessions/{session_id}/stream" in line for line in app.traffic)
    assert any(line.startswith("WS> ") and '"reset"' in line for line in app.traffic)  # Reset went on the socket
