"""A session's page and panel for a session that is not the viewer's, or not there: the HTML 404 page."""

from __future__ import annotations

import httpx

from tests.support.dashboard import sign_in
from tests.support.gateway import Gateway, Tenant


async def test_another_tenants_or_a_missing_session_is_the_404_page(
    gateway: Gateway, acme: Tenant, globex: Tenant
) -> None:
    created = await globex.http.post("/v1/sessions", json={"kind": "vlm"})
    assert created.status_code == 201, created.text
    theirs = created.json()["id"]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as browser:
        assert (await sign_in(browser, acme.key)).status_code == 303
        for session_id in (theirs, "job_0000000000000000000000000", "not-an-id"):
            for path in (f"/sessions/{session_id}", f"/sessions/{session_id}/panel"):
                missing = await browser.get(path)
                assert missing.status_code == 404, path
                assert "text/html" in missing.headers["content-type"]
                assert f"There is no session {session_id!r} here." in missing.text.replace("&#39;", "'")
        mine = await acme.http.post("/v1/sessions", json={"kind": "vlm"})
        page = await browser.get(f"/sessions/{mine.json()['id']}")
        assert page.status_code == 200
        assert "There is no session" not in page.text
