"""examples/badminton-web (Vue 3) in Debian's Chromium against the embedded stack: the page uploads a
match straight to storage, runs the real ``pose`` workload, follows it live and shows the processed
video and one table row per player, as the job's result lists them. The API key never reaches the page.

The model is the yaml-built one (random weights, nothing downloaded): under a tiny threshold it sees a
hundred equally unlikely people a frame, too weak for ByteTrack, so the page turns tracking off and
each frame's rank is a player."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gpurelay_client import Client

from modal_workers.pose.synth import write_video
from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import open_example

pytestmark = [browser_timeout(240), pytest.mark.slow]
CONF = "0.00002"
"""A threshold the random-weights model's candidates pass (as in ``tests/workers/pose/support.py``)."""
ROWS = """[...document.querySelectorAll('#players tbody tr[data-player]')]
  .map((row) => [row.dataset.player, Number(row.querySelector('.frames').textContent)])"""


def test_the_page_tracks_the_players_of_a_match(stack: ThreadedStack, chromium: Any, tmp_path: Path) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    match = write_video(tmp_path / "match.mp4", frames=24, width=320, height=240)
    with open_example("badminton-web", chromium, gateway, key) as app:
        app.page.set_input_files("#match", str(match))
        app.page.fill("#conf", CONF)
        app.page.select_option("#imgsz", "160")
        app.page.uncheck("#track")
        app.page.click("#start")
        assert app.wait_until_ended() == "Done", app.errors
        app.page.wait_for_function("document.getElementById('processed').readyState >= 1")
        video = app.page.evaluate("(v => [v.videoWidth, v.src])(document.getElementById('processed'))")
        job_id = app.page.get_attribute("#results", "data-job")
        rows = app.page.evaluate(ROWS)
        upload, processing = app.progress("upload-progress"), app.progress("job-progress")
        app.assert_never_saw(key)
        assert app.errors == []
    assert job_id
    with Client(gateway, api_key=key) as client:
        job = client.jobs.get(job_id)
    assert (job.status, job.subject) == ("succeeded", "example-visitor")
    assert job.result is not None
    assert (job.result["processedFrames"], job.result["videoWidth"]) == (24, 320)
    players = sorted(job.result["players"].values(), key=lambda p: p["id"])
    assert len(players) == 100  # the model's hundred candidates a frame, each seen in every frame
    assert {p["frameCount"] for p in players} == {24}
    assert rows == [[str(p["id"]), p["frameCount"]] for p in players]
    assert video[0] > 0
    assert "processed.webm" in video[1]
    assert upload[-1:] == [1.0], upload
    assert processing[-1:] == [1.0], processing
    assert any(0 < v < 1 for v in processing), processing
    assert any(f"/v1/jobs/{job_id}/events?token=" in line for line in app.traffic)
