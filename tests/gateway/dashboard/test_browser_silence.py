"""A dashboard page whose event stream goes silent (its host gone without closing) opens it again and
misses nothing: a job page resumes after the last event it showed, the jobs list follows its feed
again; one whose stream drops after its token expired follows it on a fresh token; a live session's
socket gone silent is opened again and its frames go on; a job page reached through the proxy (another
origin than ``GPURELAY_URL``) fetches its results and draws them. Real Chromium
through a TCP proxy in front of the embedded stack; the proxy drops what the server sends on the
stream's connection only, so the page's other requests still get through. The stack sends its
keep-alive every second, the pages give a stream 3 s and a stream token lives 10 s."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.gateway.dashboard.conftest import ECHO_ROUTE, ROOT, Browsing, _open
from tests.gateway.dashboard.test_browser import api, lap_job, sent_upload, sign_in, start_session, submitted_lap
from tests.support.browser import browser_timeout, require_chromium
from tests.support.dashboard import ThreadedStack, running_stack
from tests.support.lap import scrolling_video, write_video
from tests.support.tcp_proxy import TcpProxy

pytestmark = [browser_timeout(180), pytest.mark.slow]

IDLE_S = 3
"""The pages' ``GPURELAY_DASHBOARD_STREAM_IDLE_S`` here (the notifier's keep-alive: every second)."""
TOKEN_TTL_S = 10
"""``GPURELAY_STREAM_TOKEN_TTL_S`` here: a silent stream is opened again on its URL well within it."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedStack]:
    require_chromium()
    folder = tmp_path_factory.mktemp("silence")
    table = yaml.safe_load((ROOT / "deploy" / "routes.yaml").read_text())
    table["profiles"]["dev"]["vlm"] = ECHO_ROUTE  # a session's frames answered without a model
    routes = yaml.safe_dump(table)
    env = {
        "GPURELAY_SSE_HEARTBEAT_S": "1",
        "GPURELAY_DASHBOARD_STREAM_IDLE_S": str(IDLE_S),
        "GPURELAY_STREAM_TOKEN_TTL_S": str(TOKEN_TTL_S),
    }
    with running_stack(folder, routes, **env) as running:
        yield running


@pytest.fixture
def proxy(stack: ThreadedStack) -> Iterator[TcpProxy]:
    running = TcpProxy(stack.env["GPURELAY_URL"])
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def browsing(chromium: Any, proxy: TcpProxy) -> Iterator[Browsing]:
    """A page that reaches the stack through :func:`proxy`."""
    yield from _open(chromium, proxy.url, viewport={"width": 1280, "height": 900})


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s`` (the page runs in this thread's
    Playwright, so no event loop to await on)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def waiting_job(client: httpx.Client, folder: Path) -> str:
    """A lap_compare job waiting for its input (the upload's file sent, not completed): it stays unended,
    with no event of its own, until a test cancels it."""
    return lap_job(client, sent_upload(client, scrolling_video(folder / "lap.mp4", [2.5 * k for k in range(24)])))


def token_status(url: str) -> int:
    """What ``url`` answers its token alone, as a page sends it (an open stream is left at once)."""
    with httpx.stream("GET", url, timeout=30) as answer:
        return answer.status_code


def job_page(b: Browsing, client: httpx.Client, folder: Path) -> tuple[str, bytes]:
    """A waiting job's page (signed in), its stream open; the job's id and its stream's request line's path."""
    job_id = waiting_job(client, folder)
    b.page.goto(f"/jobs/{job_id}")
    b.page.wait_for_selector("#event-log li[data-type='job.created']")
    return job_id, f"/v1/jobs/{job_id}/events?".encode()


def canceled(b: Browsing, client: httpx.Client, job_id: str) -> list[str]:
    """Cancel ``job_id`` (its next events); the event types its page then shows."""
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    b.page.wait_for_function("document.getElementById('job-status').textContent === 'canceled'", timeout=60_000)
    shown: list[str] = b.page.eval_on_selector_all("#event-log li", "items => items.map((li) => li.dataset.type)")
    return shown


def test_a_job_page_whose_stream_goes_silent_resumes_after_its_last_event(
    browsing: Browsing, proxy: TcpProxy, stack: ThreadedStack, tmp_path: Path
) -> None:
    sign_in(browsing, stack.env["GPURELAY_API_KEY"])
    assert browsing.page.get_attribute('meta[name="gpurelay-stream-idle-ms"]', "content") == str(IDLE_S * 1000)
    with api(stack) as client:
        job_id, stream = job_page(browsing, client, tmp_path)
        assert proxy.mute_where(stream) == 1
        opened = proxy.opened_with(stream)  # the page hears nothing more on it, not even a keep-alive
        eventually(lambda: proxy.opened_with(stream) > opened, "the page never opened its silent stream again")
        again = [line for line in proxy.history if stream in line][-1]
        assert b"&after=" in again, again  # resumed after job.created, not from the start
        shown = canceled(browsing, client, job_id)
    assert shown == ["job.created", "job.cancel_requested", "job.canceled"], shown  # none missed, none twice
    browsing.expect_no_errors()


def test_the_jobs_list_whose_feed_goes_silent_follows_it_again(
    browsing: Browsing, proxy: TcpProxy, stack: ThreadedStack, tmp_path: Path
) -> None:
    sign_in(browsing, stack.env["GPURELAY_API_KEY"])
    feed = b"GET /v1/events?"
    eventually(lambda: proxy.opened_with(feed) >= 1, "the list never opened its feed")
    assert proxy.mute_where(feed) == 1
    opened = proxy.opened_with(feed)
    eventually(lambda: proxy.opened_with(feed) > opened, "the list never opened its silent feed again")
    with api(stack) as client:
        job_id = waiting_job(client, tmp_path)
    browsing.page.wait_for_selector(f"tr[data-job='{job_id}']")  # the list reloaded its rows on job.created
    browsing.expect_no_errors()


def test_a_job_page_whose_stream_drops_after_its_token_expired_follows_it_on_a_fresh_token(
    browsing: Browsing, proxy: TcpProxy, stack: ThreadedStack, tmp_path: Path
) -> None:
    sign_in(browsing, stack.env["GPURELAY_API_KEY"])
    with api(stack) as client:
        job_id, stream = job_page(browsing, client, tmp_path)
        first = str(browsing.page.get_attribute("#job", "data-events"))
        url = stack.env["GPURELAY_URL"] + first
        eventually(lambda: token_status(url) == 401, "the page's stream token expired", timeout_s=TOKEN_TTL_S + 10)
        opened = proxy.opened_with(stream)
        proxy.cut()
        eventually(lambda: proxy.opened_with(stream) > opened, "the page never followed its dropped stream again")
        shown = canceled(browsing, client, job_id)
    again = [line for line in proxy.history if stream in line][-1]
    assert first.split("token=")[1].split("&")[0].encode() not in again  # a fresh token
    assert shown == ["job.created", "job.cancel_requested", "job.canceled"], shown
    browsing.expect_no_errors("ERR_INCOMPLETE_CHUNKED_ENCODING")  # the stream the proxy cut, as the browser tells it


def test_a_sessions_socket_gone_silent_is_opened_again_and_its_frames_go_on(
    browsing: Browsing, proxy: TcpProxy, stack: ThreadedStack, tmp_path: Path
) -> None:
    page, socket = browsing.page, b"/stream?"
    scene = np.random.default_rng(5).integers(0, 255, (30, 40, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    frames = (np.roll(scene, 2 * k, axis=1) for k in range(360))
    start_session(
        browsing, stack, "vlm", {"idle_timeout_s": 600}, write_video(tmp_path / "walk.webm", frames, 12.0, "VP80")
    )
    page.wait_for_function("Number(document.getElementById('s-acked').textContent) >= 3", timeout=60_000)
    assert proxy.mute_where(socket) == 1
    opened = proxy.opened_with(socket)  # its acks, events and pongs dropped from now on
    eventually(lambda: proxy.opened_with(socket) > opened, "the page never opened its silent socket again")
    again = [line for line in proxy.history if socket in line][-1]
    assert b"after=1 " not in again, again  # resumed after the events it had, not from the first
    acked = int(page.inner_text("#s-acked"))
    page.wait_for_function(f"Number(document.getElementById('s-acked').textContent) >= {acked + 3}", timeout=30_000)
    page.click("#s-stop")
    page.wait_for_function("document.getElementById('s-state').textContent === 'succeeded'", timeout=60_000)
    assert "socket silent; opening it again" in page.inner_text("#s-log")
    browsing.expect_no_errors()


def test_a_job_page_reached_through_a_proxy_draws_its_results(
    browsing: Browsing, stack: ThreadedStack, tmp_path: Path
) -> None:
    sign_in(browsing, stack.env["GPURELAY_API_KEY"])
    with api(stack) as client:
        job_id = submitted_lap(client, scrolling_video(tmp_path / "lap.mp4", [3.0 * k for k in range(48)]))
    browsing.page.goto(f"/jobs/{job_id}")
    browsing.page.wait_for_function("document.getElementById('job-status').textContent === 'succeeded'", timeout=90_000)
    browsing.page.wait_for_selector("#speed-chart[data-points] canvas")  # metrics.json fetched on this origin
    assert int(browsing.page.get_attribute("#speed-chart", "data-points") or 0) > 0
    browsing.expect_no_errors()  # no CORS refusal of a result at GPURELAY_URL's origin
