"""A session's dashboard page in a real browser (Debian's Chromium): its recording, a replay started from
the page, and the replay's page showing the comparison with both runs' figures once it ends."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.support import record_when, settled
from tests.gateway.dashboard.conftest import Browsing
from tests.gateway.dashboard.test_browser import api, shot, sign_in
from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack
from tests.support.sessions import jpeg

pytestmark = [browser_timeout(240), pytest.mark.slow]


def ended_vlm_session(stack: ThreadedStack, client: httpx.Client, frames: int) -> str:
    """A vlm session (the echo workload answers each frame) fed ``frames`` frames, then stopped."""
    created = client.post("/v1/sessions", json={"kind": "vlm"})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]
    for i in range(frames):
        frame = client.post(f"/v1/sessions/{sid}/frames", content=jpeg(i), headers={"Content-Type": "image/jpeg"})
        assert frame.status_code == 202, frame.text
    env = stack.env
    stack.call(record_when(env, sid, lambda r: r.session is not None and r.session.last_result_seq >= frames))
    assert client.post(f"/v1/sessions/{sid}/stop").status_code == 202
    assert stack.call(settled(env, sid), 40).status == "succeeded"
    return sid


def test_a_replay_started_from_the_session_page_shows_its_comparison(browsing: Browsing, stack: ThreadedStack) -> None:
    b = browsing
    with api(stack) as client:
        sid = ended_vlm_session(stack, client, 3)
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    b.page.goto(f"/sessions/{sid}")
    assert b.page.inner_text("[data-fact=recorded-frames]") == "3"
    assert b.page.inner_text("[data-fact=recording-complete]") == "yes"
    assert b.page.inner_text("[data-fact=source]") == "its clients"
    shot(b, "session-recorded", "Recording", "Export the recording")

    b.page.fill("#replay-params", '{"frame_buffer": 2}')
    b.page.select_option("#replay-speed", "max")
    b.page.click("#replay")
    b.page.wait_for_url(lambda url: "/sessions/job_" in url and not url.endswith(sid))
    replay = b.page.url.rpartition("/")[2]
    assert replay != sid
    b.page.wait_for_selector("#comparison", timeout=60_000)  # the panel reloads when the replay ends
    figures = {
        row.get_attribute("data-figure"): [cell.inner_text() for cell in row.query_selector_all("td")]
        for row in b.page.query_selector_all("#comparison tr[data-figure]")
    }
    assert figures["frames"] == ["3", "3"]
    assert figures["results"] == ["3", "3"]
    answers = [
        [c.inner_text() for c in r.query_selector_all("td")] for r in b.page.query_selector_all("tr[data-chunk]")
    ]
    assert answers == [[str(n), f"{n}–{n}", f"frame {n}", f"frame {n}"] for n in (1, 2, 3)]
    assert sid in b.page.inner_text("[data-fact=source]")
    shot(b, "session-comparison", "Compared with", "Frames taken", "Each chunk's answers")
    with api(stack) as client:
        assert client.get(f"/v1/sessions/{replay}").json()["spec"]["params"]["frame_buffer"] == 2
    b.expect_no_errors()
