"""The dashboard in a real browser (Debian's Chromium via Playwright) against the embedded stack:
sign in, upload and submit a lap, watch it live to the end, its charts and video; cancel a running
job; a webhook's secret shown once; a splat session fed from a video file, its 3D view painted; a
wrong key refused; another tenant's job a 404 page. Each page is saved as a screenshot and checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest

from tests.gateway.dashboard.conftest import SCREENSHOTS, Browsing
from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack
from tests.support.lap import scrolling_video, write_video

pytestmark = [browser_timeout(240), pytest.mark.slow]


def shot(b: Browsing, name: str, *texts: str) -> None:
    """Save the page as ``SCREENSHOTS/name.png``; it is not blank and shows each of ``texts``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    b.page.screenshot(path=str(path), full_page=True)
    image = cv2.imread(str(path))
    assert image is not None
    assert image.shape[0] > 100
    assert image.shape[1] > 100
    assert float(image.std()) > 10.0, f"{name}: a blank screenshot"
    shown = b.page.inner_text("body")
    for text in texts:
        assert text in shown, f"{name}: {text!r} not on the page"


PHONE_WIDTH = 390
"""The ``phone`` fixture's viewport width."""


def fits_a_phone(page: Any) -> bool:
    """Whether the page is no wider than a phone's screen. Not ``innerWidth``: a mobile browser widens its
    layout viewport to a page wider than the screen (and zooms out), so that would always hold."""
    return bool(page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH + 1)


def sign_in(b: Browsing, key: str) -> None:
    """Sign in with the keyboard only: the key field has focus, Enter sends the form."""
    b.page.goto("/login")
    b.page.wait_for_function("document.activeElement && document.activeElement.id === 'api_key'")  # autofocus
    b.page.keyboard.type(key)
    b.page.keyboard.press("Enter")
    b.page.wait_for_url("**/jobs")


RECORD_QUEUE_PLACE = """document.addEventListener("DOMContentLoaded", () => {
  const place = document.getElementById("job-queue");
  if (!place) return;
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem("queue-place") || "[]");
    if (!place.hidden) seen.push(place.textContent);
    sessionStorage.setItem("queue-place", JSON.stringify(seen.slice(-50)));
  }).observe(place, { childList: true, characterData: true, subtree: true, attributes: true });
});"""
"""Every place in line a job page shows (``#job-queue`` while visible), kept in sessionStorage."""


def recorded(b: Browsing, progress_id: str) -> list[float]:
    """Every value scripts gave the ``<progress id=progress_id>`` in this tab."""
    values: list[float] = json.loads(b.page.evaluate(f"sessionStorage.getItem('progress:{progress_id}') || '[]'"))
    return values


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lap (mp4), a longer lap to cancel, and a VP8 WebM the browser can decode for a session."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(3)
    scene = (rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).repeat(8, 0).repeat(8, 1)
    webm = write_video(folder / "walk.webm", (np.roll(scene, 4 * k, axis=1) for k in range(60)), 12.0, "VP80")
    return {
        "lap": scrolling_video(folder / "lap.mp4", [3.0 * k for k in range(96)], size=(640, 360)),
        "reference": scrolling_video(folder / "reference.mp4", [2.5 * k for k in range(72)], size=(320, 180)),
        "long": scrolling_video(folder / "long.mp4", [2.0 * k for k in range(400)], size=(640, 360)),
        "webm": webm,
    }


def api(stack: ThreadedStack, key: str | None = None) -> httpx.Client:
    """An API client of the stack with ``key`` (default: the dev key)."""
    headers = {"Authorization": f"Bearer {key or stack.env['GPURELAY_API_KEY']}"}
    return httpx.Client(base_url=stack.env["GPURELAY_URL"], headers=headers, timeout=30)


def sent_upload(client: httpx.Client, path: Path) -> str:
    """The id of an upload of ``path``, its file sent to the pre-signed URL (not completed yet)."""
    data = path.read_bytes()
    signed = client.post("/v1/uploads", json={"filename": path.name, "content_type": "video/mp4", "size": len(data)})
    assert signed.status_code == 201, signed.text
    put = httpx.put(signed.json()["url"], content=data, headers=signed.json()["headers"])
    assert put.status_code < 300, put.text
    return str(signed.json()["id"])


def lap_job(client: httpx.Client, upload_id: str) -> str:
    """A lap_compare job of ``upload_id``'s video."""
    job = client.post("/v1/jobs", json={"kind": "lap_compare", "inputs": {"video": {"upload_id": upload_id}}})
    assert job.status_code == 201, job.text
    return str(job.json()["id"])


def submitted_lap(client: httpx.Client, path: Path) -> str:
    upload_id = sent_upload(client, path)
    assert client.post(f"/v1/uploads/{upload_id}/complete").status_code == 200
    return lap_job(client, upload_id)


def test_a_lap_is_uploaded_submitted_watched_live_and_shown_as_charts_and_video(
    browsing: Browsing, stack: ThreadedStack, videos: dict[str, Path]
) -> None:
    b, page = browsing, browsing.page
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    shot(b, "jobs", "Jobs", "Sign out")
    page.goto("/jobs/new")
    page.set_input_files("#in-video", str(videos["lap"]))
    page.set_input_files("#in-reference", str(videos["reference"]))
    page.fill("#p-downscale_width", "10")
    page.click("#submit-job")  # the API refuses the params: its message lands next to the field
    page.wait_for_selector("[data-loc='params.downscale_width']:not(:empty)")
    assert "64" in page.inner_text("[data-loc='params.downscale_width']")  # "greater than or equal to 64"
    assert page.is_visible("#form-problem")
    shot(b, "new-job-refused", "New job", "Downscale width", "64")
    page.fill("#p-downscale_width", "640")
    page.add_init_script(RECORD_QUEUE_PLACE)
    page.click("#submit-job")
    page.wait_for_url("**/jobs/job_*")
    uploads = recorded(b, "up-video")
    assert uploads[-1] == 100
    assert uploads[0] < 100  # the bar moved up to 100 %
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function("document.getElementById('job-status').textContent === 'succeeded'", timeout=90_000)
    assert page.inner_text("#job-message") == ""  # not the last progress message ("uploading artifacts")
    moves = [v for v in recorded(b, "job-progress") if 0 < v < 1]
    assert len(set(moves)) >= 2, recorded(b, "job-progress")  # the bar moved, live
    assert recorded(b, "job-progress")[-1] == 1
    assert page.evaluate("window.__sameDocument === true")  # no reload
    places = json.loads(page.evaluate("sessionStorage.getItem('queue-place') || '[]'"))
    assert "1st in line" in places, places  # job.queued's place, live (no job.position: nothing was ahead)
    page.wait_for_selector("#speed-chart[data-points] canvas")
    points = int(page.get_attribute("#speed-chart", "data-points") or 0)
    assert points > 10
    painted = page.evaluate(
        "() => { const c = document.querySelector('#speed-chart canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;"
        " return n; }"
    )
    assert painted > 500  # the speed line and axes are drawn
    page.wait_for_selector("#delta-chart[data-points] canvas")  # with a reference: the per-segment deltas
    assert int(page.get_attribute("#delta-chart", "data-points") or 0) >= 5
    page.wait_for_selector("#delta-chart[data-span]")  # its edge bars whole: half a segment past each end
    assert json.loads(page.get_attribute("#delta-chart", "data-span") or "null") == [-0.5, 0.5]
    assert "overlay.mp4" in page.inner_text("#artifacts")
    video = page.evaluate(VIDEO_STATE, "video[data-video='overlay.mp4']")  # the WebM rendition plays
    assert video["ready"] == "playing", video
    assert video["readyState"] >= 2, video
    assert video["duration"] > 0, video
    assert video["error"] is None, video
    assert urlsplit(video["src"]).path.endswith("/overlay.webm"), video
    assert (video["status"], video["type"]) == (200, "video/webm"), video
    assert "cannot decode" not in page.inner_text("#results figcaption")
    download = page.get_attribute("#results a[data-download='overlay.mp4']", "href") or ""
    assert urlsplit(download).path.endswith("/overlay.mp4")  # the mp4 stays, as a download
    assert page.inner_text("[data-fact=status]") == "succeeded"  # the panel shows the settled record
    assert "manifest.json" in page.inner_text("#artifacts")
    shot(b, "job-lap-succeeded", "succeeded", "Speed profile", "Per-segment delta", "overlay.mp4", "metrics.json")
    b.expect_no_errors("status of 422")  # the refused params (Chromium logs every 4xx fetch)


VIDEO_STATE = """async (selector) => {
  const video = document.querySelector(selector);
  const sources = video.querySelectorAll("source");
  const ready = await new Promise((res) => {
    setTimeout(() => res("timed out"), 20000);
    const play = () => { video.muted = true; video.play().then(() => res("playing"), (e) => res("play: " + e)); };
    if (video.readyState >= 2) return play();
    video.addEventListener("canplay", play, { once: true });
    video.addEventListener("error", () => res("error " + video.error.code), { once: true });
    if (sources.length) sources[sources.length - 1].addEventListener("error", () => res("no source"), { once: true });
    video.preload = "auto";
    video.load();
  });
  const r = await fetch(video.currentSrc, { cache: "no-store" });  // not the media cache's partial copy
  const error = video.error ? video.error.code : null;
  const state = { readyState: video.readyState, duration: video.duration, error, src: video.currentSrc };
  return { status: r.status, type: r.headers.get("content-type"), ready, ...state };
}"""


def test_a_running_job_is_canceled_from_its_page(
    browsing: Browsing, stack: ThreadedStack, videos: dict[str, Path]
) -> None:
    b, page = browsing, browsing.page
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    with api(stack) as client:
        job_id = submitted_lap(client, videos["long"])
    page.wait_for_selector(f"tr[data-job='{job_id}']")  # the list follows the tenant's feed: no reload
    page.click(f"a[href='/jobs/{job_id}']")
    page.wait_for_url(f"**/jobs/{job_id}")  # the predicate below must not run on the list page
    page.wait_for_selector("#job-status")
    page.wait_for_function("document.getElementById('job-status').textContent === 'running'", timeout=60_000)
    page.click("#cancel")
    page.wait_for_function("document.getElementById('job-status').textContent === 'canceled'", timeout=60_000)
    assert page.is_hidden("#cancel")
    assert "job.cancel_requested" in page.inner_text("#event-log")
    shot(b, "job-canceled", "canceled", "Cancellation requested.")
    # ended: no progress message left saying what it was doing, and no artifact still to come
    assert page.inner_text("#job-message") == ""
    page.wait_for_function("document.getElementById('artifacts').innerText.trim() === 'None.'", timeout=30_000)
    page.reload()
    page.wait_for_selector("#artifacts")
    assert (page.inner_text("#job-message"), page.inner_text("#artifacts").strip()) == ("", "None.")
    b.expect_no_errors()


def test_a_webhook_endpoint_is_created_and_its_secret_shown_once(browsing: Browsing, stack: ThreadedStack) -> None:
    b, page = browsing, browsing.page
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    page.goto("/webhooks")
    reached: list[str] = []  # with the keyboard only: Tab from the top to the form, fill it, send it
    while len(reached) < 40 and (not reached or reached[-1] != "wh-url"):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert reached[0] == "Skip to content"
    assert {"Jobs", "New job", "Sessions", "Webhooks", "Robots", "Sign out", "wh-url"} <= set(reached)
    page.keyboard.type("http://127.0.0.1:9/hooks/gpurelay")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("job.succeeded, job.failed")
    for _ in range(2):  # the description, then the button
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Add endpoint"
    page.keyboard.press("Enter")
    page.wait_for_selector("#wh-secret:not([hidden])")
    secret = page.inner_text("#wh-secret-value")
    assert secret.startswith("whsec_")
    page.wait_for_selector("#webhook-rows [data-endpoint]")
    endpoint = page.get_attribute("#webhook-rows [data-endpoint]", "data-endpoint")
    shot(b, "webhooks-created", "Store it now", "127.0.0.1:9/hooks/gpurelay", "job.succeeded, job.failed")
    page.click(f"button[data-action=deliveries][data-id='{endpoint}']")
    page.wait_for_selector("#wh-deliveries tr")
    page.reload()
    assert secret not in page.content()  # shown once
    assert page.is_hidden("#wh-secret")
    with api(stack) as client:
        listed = client.get(f"/v1/webhooks/{endpoint}").json()
    assert "secret" not in listed
    b.expect_no_errors()


def test_a_robots_joints_show_live_with_a_sparkline_each(browsing: Browsing, stack: ThreadedStack) -> None:
    with api(stack) as client:
        sent = client.post("/v1/robots/arm-1/joints", json={"joint_angles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
        assert sent.status_code < 300, sent.text
        b, page = browsing, browsing.page
        sign_in(b, stack.env["GPURELAY_API_KEY"])
        page.goto("/robots")
        page.wait_for_function(
            "document.getElementById('joint-2') && document.getElementById('joint-2').textContent === '0.300 rad'"
        )
        assert page.locator("#joints .joint canvas").count() >= 6
        again = client.post("/v1/robots/arm-1/joints", json={"joint_angles": [0.1, 0.2, 0.9, 0.4, 0.5, 0.6]})
        assert again.status_code < 300, again.text
    page.wait_for_function("document.getElementById('joint-2').textContent === '0.900 rad'")  # live
    shot(b, "robots", "shoulder_pan", "elbow_flex", "0.900 rad")
    b.expect_no_errors()


def test_a_wrong_key_is_refused(browsing: Browsing, stack: ThreadedStack) -> None:
    b, page = browsing, browsing.page
    page.goto("/jobs")
    page.wait_for_url("**/login?next=/jobs")
    page.fill("#api_key", stack.env["GPURELAY_API_KEY"][:-3] + "xyz")
    page.click("button[type=submit]")
    page.wait_for_selector("#login-error")
    assert "/login" in page.url
    shot(b, "login-refused", "That API key is not valid")
    page.goto("/jobs")
    assert "/login" in page.url
    b.expect_no_errors("status of 401")


def test_another_tenants_job_is_a_404_page_at_phone_width(phone: Browsing, stack: ThreadedStack) -> None:
    other = stack.call(stack.key_for("globex"))
    with api(stack, other) as client:
        signed = client.post("/v1/uploads", json={"filename": "x.mp4", "content_type": "video/mp4", "size": 64})
        job = client.post("/v1/jobs", json={"kind": "pose", "inputs": {"video": {"upload_id": signed.json()["id"]}}})
        assert job.status_code == 201, job.text
    b, page = phone, phone.page
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    assert fits_a_phone(page)  # no sideways scroll
    shot(b, "jobs-phone", "Jobs", "New job")
    answer = page.goto(f"/jobs/{job.json()['id']}")
    assert answer is not None
    assert answer.status == 404
    shot(b, "job-of-another-tenant", "Not found")
    b.expect_no_errors("status of 404")


def start_session(b: Browsing, stack: ThreadedStack, kind: str, params: dict[str, Any], video: Path) -> None:
    """Sign in, start a ``kind`` session from the sessions page and feed it ``video``'s frames."""
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    b.page.goto("/sessions")
    b.page.select_option("#s-kind", kind)
    b.page.fill("#s-params", json.dumps(params))
    b.page.click("#start-session button[type=submit]")
    b.page.wait_for_selector("#session:not([hidden])")
    b.page.set_input_files("#s-video", str(video))


def test_a_splat_session_from_a_video_file_paints_its_3d_view(
    browsing: Browsing, stack: ThreadedStack, videos: dict[str, Path]
) -> None:
    b, page = browsing, browsing.page
    # The session must outlive the video by far: a loaded machine took over a minute from its last frame
    # to the painted canvas, and an idle session ends itself (its stop was then refused, 409).
    params = {"snapshot_every_s": 0.5, "steps_per_frame": 2, "max_gaussians": 2000, "idle_timeout_s": 600}
    start_session(b, stack, "splat", params, videos["webm"])
    page.wait_for_selector("#splat-canvas[data-snapshots]", timeout=90_000)
    assert int(page.inner_text("#s-acked")) > 0
    # Spark sorts the new splats in a worker before it draws them: wait for the painted canvas.
    page.wait_for_function(f"({PAINTED})('#splat-canvas') > 200", timeout=30_000)
    assert int(page.inner_text("#splat-note").split()[0]) > 0  # "N Gaussians"
    shot(b, "session-splat", "Gaussians", "3D view")
    page.click("#s-stop")
    page.wait_for_function("document.getElementById('s-state').textContent === 'succeeded'", timeout=60_000)
    b.expect_no_errors()


def test_a_vlm_sessions_answers_show_as_they_come(
    browsing: Browsing, stack: ThreadedStack, videos: dict[str, Path]
) -> None:
    b, page = browsing, browsing.page
    start_session(b, stack, "vlm", {}, videos["webm"])
    assert page.is_visible("#s-results")
    assert page.is_hidden("#s-splat")
    page.wait_for_selector("#vlm-results li")  # the echo workload answers each frame
    assert "frame 1" in page.inner_text("#vlm-results")
    shot(b, "session-vlm", "Results", "frame 1")
    page.click("#s-stop")
    page.wait_for_function("document.getElementById('s-state').textContent === 'succeeded'", timeout=60_000)
    b.expect_no_errors()


PAINTED = """(selector) => {
  const gl = document.querySelector(selector);
  const copy = document.createElement("canvas");
  copy.width = gl.width; copy.height = gl.height;
  const ctx = copy.getContext("2d");
  ctx.drawImage(gl, 0, 0);
  const d = ctx.getImageData(0, 0, copy.width, copy.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - 0x10) + Math.abs(d[i + 1] - 0x14) + Math.abs(d[i + 2] - 0x18) > 24) n++;
  }
  return n;
}"""
