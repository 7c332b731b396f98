"""Every page of the dashboard at a phone's width (Debian's Chromium as a mobile browser): none is wider
than the screen (a wide table scrolls within its card, a long id or URL breaks, a form's fieldset
shrinks), and a button at the end of a wide table row can still be pressed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.dashboard.conftest import Browsing
from tests.gateway.dashboard.test_browser import api, fits_a_phone, shot, sign_in, submitted_lap
from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack
from tests.support.lap import scrolling_video

pytestmark = [browser_timeout(240), pytest.mark.slow]


def test_every_page_fits_a_phone_and_its_buttons_can_be_pressed(
    phone: Browsing, stack: ThreadedStack, tmp_path: Path
) -> None:
    with api(stack) as client:
        job_id = submitted_lap(client, scrolling_video(tmp_path / "lap.mp4", [3.0 * k for k in range(24)]))
        hook = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/a/long/path/of/a/hook/that/fails"})
        assert hook.status_code == 201, hook.text
    b, page = phone, phone.page
    sign_in(b, stack.env["GPURELAY_API_KEY"])
    for path in ("/jobs", "/jobs/new", f"/jobs/{job_id}", "/sessions", "/robots", "/usage", "/webhooks"):
        page.goto(path)
        page.wait_for_load_state("load")
        assert fits_a_phone(page), path
    endpoint = hook.json()["id"]
    page.click(f"button[data-action=deliveries][data-id='{endpoint}']")  # a real press, at the row's end
    page.wait_for_selector("#wh-deliveries tr")
    assert fits_a_phone(page)
    shot(b, "webhooks-phone", "Webhooks", endpoint)
    b.expect_no_errors()
