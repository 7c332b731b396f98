"""examples/lap-compare-web in Debian's Chromium against the embedded stack: its app server mints a
scoped token with the API key, the page uploads two laps straight to storage (progress bars), runs
the real ``lap_compare``, follows it over SSE and shows the overlay video and the speed chart. The
API key reaches neither the page nor anything it loads or sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpurelay_client import Client

from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import open_example
from tests.support.lap import lap_positions, lap_speeds, scrolling_video

pytestmark = [browser_timeout(240), pytest.mark.slow]
CHART_POINTS = """Object.fromEntries([...document.querySelectorAll('#speed-chart polyline')]
  .map((line) => [line.dataset.lap, line.getAttribute('points').split(' ').length]))"""


def test_the_page_compares_two_laps_with_a_minted_token(stack: ThreadedStack, chromium: Any, tmp_path: Path) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    lap = scrolling_video(tmp_path / "lap.mp4", lap_positions(lap_speeds(24, mean=3.0)))
    reference = scrolling_video(tmp_path / "reference.mp4", lap_positions(lap_speeds(30, mean=2.4)))
    with open_example("lap-compare-web", chromium, gateway, key) as app:
        app.page.set_input_files("#lap", str(lap))
        app.page.set_input_files("#reference", str(reference))
        app.page.click("#start")
        assert app.wait_until_ended() == "Done", app.errors
        app.page.wait_for_function("document.getElementById('overlay').readyState >= 1")  # the video's metadata
        video = app.page.evaluate("(v => [v.videoWidth, v.src])(document.getElementById('overlay'))")
        job_id = app.page.get_attribute("#results", "data-job")
        points = app.page.evaluate(CHART_POINTS)
        uploads = {bar: app.progress(bar) for bar in ("lap-upload", "reference-upload")}
        analysis = app.progress("job-progress")
        app.assert_never_saw(key)
        assert app.errors == []
    assert job_id
    with Client(gateway, api_key=key) as client:
        job = client.jobs.get(job_id)
        files = {path.name: path for path in client.jobs.download_artifacts(job, tmp_path / "artifacts")}
    metrics = json.loads(files["metrics.json"].read_text())
    assert (job.status, job.subject) == ("succeeded", "example-visitor")
    assert points == {"lap": len(metrics["video"]["frames"]), "reference": len(metrics["reference"]["frames"])}
    assert video[0] > 0
    assert "overlay.webm" in video[1]
    for bar, values in uploads.items():
        assert values[-1:] == [1.0], (bar, values)
    assert analysis[-1:] == [1.0], analysis
    assert any(0 < v < 1 for v in analysis), analysis
    assert analysis == sorted(analysis), analysis
    assert any(f"/v1/jobs/{job_id}/events?token=" in line for line in app.traffic)
    assert sum(line.startswith(f"PUT {gateway}/v1/blobs/") for line in app.traffic) == 2, "both laps to storage"
