"""The usage page and the new-job form from GET /v1/kinds in a real browser (Debian's Chromium via
Playwright): the chart of GPU-seconds and cost per day is painted, the form shows the kind's price."""

from __future__ import annotations

import json

import pytest

from tests.gateway.dashboard.conftest import Browsing
from tests.gateway.dashboard.test_browser import shot, sign_in
from tests.support.browser import browser_timeout
from tests.support.dashboard import ThreadedStack

pytestmark = [browser_timeout(240), pytest.mark.slow]


def test_the_usage_chart_is_painted_and_the_form_shows_the_price(browsing: Browsing, stack: ThreadedStack) -> None:
    sign_in(browsing, stack.env["GPURELAY_API_KEY"])
    page = browsing.page
    page.goto("/usage?days=14")
    page.wait_for_selector("#usage-chart canvas")
    assert page.get_attribute("#usage-chart", "data-points") == "14"
    # the time axis reaches half a day past the first and the last day: their bars are whole
    page.wait_for_selector("#usage-chart[data-span]")
    assert json.loads(page.get_attribute("#usage-chart", "data-span") or "null") == [-43200, 43200]
    assert page.locator(".u-legend").count() == 1
    shot(browsing, "usage", "Usage", "Per day", "Per kind", "Quotas today")
    page.click("nav >> text=New job")
    page.wait_for_selector("#kind-price")
    assert page.inner_text("#kind-price").startswith("Runs on ")
    browsing.expect_no_errors()
