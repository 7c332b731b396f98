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

from tests.support.browser import RECORD_PROGRESS, SCAN_PAGE, record_traffic
from tests.support.dashboard import ThreadedStack
from tests.support.example_apps import allow_origin, built_site, running_app_server
from tests.support.lap import lap_positions, lap_speeds, scrolling_video

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
EXAMPLE = "lap-compare-web"
ENDED = "(s => s === 'Done' || s.startsWith('Failed'))(document.getElementById('status').textContent)"


def progress_values(page: Any, bar: str) -> list[float]:
    """Every value the page's scripts gave the ``<progress id=bar>``."""
    return [float(v) for v in page.evaluate(f"JSON.parse(sessionStorage.getItem('progress:{bar}') || '[]')")]


def test_the_page_compares_two_laps_with_a_minted_token(stack: ThreadedStack, chromium: Any, tmp_path: Path) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    lap = scrolling_video(tmp_path / "lap.mp4", lap_positions(lap_speeds(24, mean=3.0)))
    reference = scrolling_video(tmp_path / "reference.mp4", lap_positions(lap_speeds(30, mean=2.4)))
    seen: list[str] = []
    errors: list[str] = []
    with running_app_server(EXAMPLE, gateway, key) as origin:
        allow_origin(gateway, key, origin)
        context = chromium.new_context()
        try:
            context.add_init_script(RECORD_PROGRESS)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            record_traffic(page, seen)
            page.goto(origin + "/")
            page.set_input_files("#lap", str(lap))
            page.set_input_files("#reference", str(reference))
            page.click("#start")
            page.wait_for_function(ENDED, timeout=200_000)
            assert page.inner_text("#status") == "Done", (errors, [line[:300] for line in seen if " 4" in line[:5]])
            page.wait_for_function("document.getElementById('overlay').readyState >= 1")  # the video's metadata
            video = page.evaluate(
                "[document.getElementById('overlay').videoWidth, document.getElementById('overlay').src]"
            )
            job_id = page.get_attribute("#results", "data-job")
            points = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#speed-chart polyline')]"
                ".map((l) => [l.dataset.lap, l.getAttribute('points').split(' ').length]))"
            )
            uploads = {bar: progress_values(page, bar) for bar in ("lap-upload", "reference-upload")}
            analysis = progress_values(page, "job-progress")
            in_page = page.evaluate(SCAN_PAGE)
            storage = json.dumps(context.storage_state())
        finally:
            context.close()
    assert errors == []
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
    assert any(f"/v1/jobs/{job_id}/events?token=" in line for line in seen)
    assert sum(line.startswith(f"PUT {gateway}/v1/blobs/") for line in seen) == 2, "both laps went to storage"
    secret = key.rsplit("_", 1)[1]
    site = "\n".join(p.read_text(errors="replace") for p in built_site(EXAMPLE).rglob("*") if p.is_file())
    places = {"the page": in_page, "its storage": storage, "its traffic": "\n".join(seen), "the build": site}
    for where, text in places.items():
        assert key not in text, where
        assert secret not in text, where
