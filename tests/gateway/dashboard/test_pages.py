"""The dashboard's pages over real HTTP, without a browser: sign-in and its cookie, CSRF, each page's
HTML (labels on every control), tenancy (another tenant's job is the 404 page), the page's API token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from bench.harness.waiting import wait_for
from services.common.auth.apikeys import ApiKeyStore
from services.common.auth.tokens import verify_token
from tests.support.dashboard import (
    SESSION_COOKIE,
    hidden_value,
    page_token,
    set_cookie_header,
    sign_in,
    unlabelled_controls,
)
from tests.support.gateway import Gateway, Tenant, presign


@pytest.fixture
async def browser(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client with no API key, that does not follow redirects."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield http


@pytest.fixture
async def signed_in(browser: httpx.AsyncClient, acme: Tenant) -> httpx.AsyncClient:
    """``browser`` signed in as ``acme``."""
    answer = await sign_in(browser, acme.key)
    assert answer.status_code == 303, answer.text
    return browser


async def job_of(t: Tenant, kind: str = "lap_compare") -> str:
    signed = await presign(t, 1024)
    created = await t.http.post("/v1/jobs", json={"kind": kind, "inputs": {"video": {"upload_id": signed["id"]}}})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_signing_in_sets_a_signed_httponly_strict_expiring_cookie_without_the_key(
    browser: httpx.AsyncClient, acme: Tenant, gateway: Gateway
) -> None:
    answer = await sign_in(browser, acme.key, "/webhooks")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/webhooks"
    cookie = set_cookie_header(answer, SESSION_COOKIE)
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/" in flags
    assert f"max-age={gateway.settings.dashboard_session_ttl_s}" in flags
    assert "secure" not in flags  # an http:// origin; https:// origins get Secure
    assert acme.key not in cookie
    assert acme.key[20:] not in cookie  # nor its secret part
    assert (await browser.get("/webhooks")).status_code == 200


async def test_a_wrong_key_is_refused_and_sets_no_session(browser: httpx.AsyncClient, acme: Tenant) -> None:
    answer = await sign_in(browser, acme.key[:-4] + "AAAA")
    assert answer.status_code == 401
    assert "text/html" in answer.headers["content-type"]
    assert "That API key is not valid" in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert (await browser.get("/jobs")).status_code == 303


async def test_sign_in_without_its_csrf_token_is_refused(browser: httpx.AsyncClient, acme: Tenant) -> None:
    await browser.get("/login")
    answer = await browser.post("/login", data={"api_key": acme.key, "csrf": "forged", "next": "/jobs"})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


async def test_pages_send_a_stranger_to_sign_in_and_back(browser: httpx.AsyncClient) -> None:
    for path in ("/jobs", "/jobs/new", "/webhooks", "/robots", "/sessions", "/jobs/job_x"):
        answer = await browser.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/login?next={path}"
    tampered = httpx.AsyncClient(base_url=str(browser.base_url), cookies={SESSION_COOKIE: "e30.forged.sig"}, timeout=30)
    async with tampered:
        assert (await tampered.get("/jobs")).status_code == 303


async def test_sign_in_goes_on_only_to_a_path_of_this_origin(browser: httpx.AsyncClient, acme: Tenant) -> None:
    answer = await sign_in(browser, acme.key, "//evil.example/x")
    assert answer.headers["location"] == "/jobs"


async def test_logout_needs_the_sessions_csrf_token(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get("/jobs")
    refused = await signed_in.post("/logout", data={"csrf": "nope"})
    assert refused.status_code == 403
    assert (await signed_in.get("/jobs")).status_code == 200
    done = await signed_in.post("/logout", data={"csrf": hidden_value(page.text, "csrf")})
    assert done.status_code == 303
    assert 'gpurelay_session=""' in set_cookie_header(done, SESSION_COOKIE)
    assert (await signed_in.get("/jobs")).status_code == 303


async def test_the_jobs_list_shows_this_tenants_jobs_filtered_with_a_live_feed(
    signed_in: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    mine, theirs = await job_of(acme), await job_of(globex)
    listing = await signed_in.get("/jobs")
    assert listing.status_code == 200
    assert mine in listing.text
    assert theirs not in listing.text
    assert 'data-events="/v1/events?token=' in listing.text  # static/js/jobs_live.js follows it
    after = re.search(r"&after=(\d+)\"", listing.text)
    assert after is not None
    assert int(after.group(1)) >= 2  # the feed starts after both jobs' events: opening never replays history
    assert unlabelled_controls(listing.text) == []
    assert listing.headers["cache-control"] == "no-store"
    assert mine not in (await signed_in.get("/jobs?kind=pose")).text
    assert mine in (await signed_in.get("/jobs?kind=lap_compare&status=created")).text
    assert mine not in (await signed_in.get("/jobs?status=succeeded")).text
    rows = await signed_in.get("/jobs/rows?kind=lap_compare")
    assert mine in rows.text
    assert "<html" not in rows.text


async def test_a_job_page_and_another_tenants_job_is_a_404_page(
    signed_in: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    mine, theirs = await job_of(acme), await job_of(globex)
    page = await signed_in.get(f"/jobs/{mine}")
    assert page.status_code == 200
    for part in (mine, 'id="job-progress"', 'id="cancel"', "Attempts", "Cost", f"/v1/jobs/{mine}/events?token="):
        assert part in page.text, part
    for job_id in (theirs, "job_0000000000000000000000000", "not-an-id"):
        missing = await signed_in.get(f"/jobs/{job_id}")
        assert missing.status_code == 404, job_id
        assert "text/html" in missing.headers["content-type"]
        assert "Not found" in missing.text
        assert "job-progress" not in missing.text


async def test_the_new_job_form_is_generated_from_the_kinds_schema(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get("/jobs/new")
    assert page.status_code == 200
    assert 'name="input:video"' in page.text
    assert 'name="input:reference"' in page.text
    assert 'name="param:downscale_width"' in page.text
    assert 'value="640"' in page.text
    assert '<option value="farneback" selected>' in page.text
    assert 'min="64"' in page.text
    assert 'max="1920"' in page.text
    assert 'id="up-video"' in page.text  # the upload's progress bar
    assert "Max duration (s)" in page.text  # its name as words with its unit, not pydantic's title
    assert "Max Duration S" not in page.text
    assert unlabelled_controls(page.text) == []
    pose = await signed_in.get("/jobs/new?kind=pose", headers={"HX-Request": "true"})
    assert "<html" not in pose.text
    assert 'name="param:batch_size"' in pose.text
    assert 'value="8"' in pose.text
    assert 'data-control="checkbox" checked' in pose.text  # track defaults to true
    assert "IoU" in pose.text
    kinds = (await signed_in.get("/jobs/new?kind=splat")).text.split('id="kind"')[1].split("</select>")[0]
    assert 'value="lap_compare" selected' in kinds  # a session kind is not a job: the first kind instead
    assert "splat" not in kinds
    assert "vlm" not in kinds


async def test_the_vendored_browser_files_are_served(browser: httpx.AsyncClient) -> None:
    for path in ("/static/vendor/htmx/htmx.min.js", "/static/vendor/uplot/uPlot.iife.min.js", "/static/js/api.js"):
        answer = await browser.get(path)
        assert answer.status_code == 200, path
        assert "javascript" in answer.headers["content-type"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/webhooks", ['id="new-webhook"', 'id="wh-secret"', "Endpoints"]),
        ("/robots", ['id="robot-id"', 'id="joints"', "uPlot"]),
        ("/sessions", ['id="start-session"', 'id="splat-canvas"', 'id="s-video"', "/static/js/sessions.js"]),
    ],
)
async def test_the_other_pages_render_with_a_label_on_every_control(
    signed_in: httpx.AsyncClient, path: str, expected: list[str]
) -> None:
    page = await signed_in.get(path)
    assert page.status_code == 200
    for part in expected:
        assert part in page.text, part
    assert unlabelled_controls(page.text) == []


async def test_the_pages_api_token_opens_the_api_until_the_key_is_revoked(
    signed_in: httpx.AsyncClient, acme: Tenant, api_keys: ApiKeyStore, gateway: Gateway
) -> None:
    token = page_token((await signed_in.get("/jobs")).text)
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        assert (await api.get("/v1/jobs")).status_code == 200
        fresh = (await signed_in.get("/token")).json()
        assert fresh["expires_in"] == gateway.settings.dashboard_token_ttl_s
        feed = verify_token(gateway.settings.signing_secret.get_secret_value().encode(), fresh["feed_token"], "api")
        assert (feed["tenant"], feed["scopes"], feed.get("job")) == ("acme", ["events:read"], None)  # the live list's
        assert await api_keys.revoke(acme.key_id)
        # The gateway's key cache hears the revocation on its KV watch (milliseconds; a loaded machine may take longer).

        async def refused() -> bool:
            return (await api.get("/v1/jobs")).status_code == 401

        await wait_for(refused, timeout_s=10, what="the revocation to refuse the page's token")
    assert (await signed_in.get("/jobs")).status_code == 303
