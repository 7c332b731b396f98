"""An app builder's front end in a real browser (Debian's Chromium via Playwright): a page served from
another origin (allowed for the tenant) gets a scoped token from its small app server, uploads a video,
submits a lap_compare job and follows it over SSE with ``?token=``; the API key never reaches the page
(its JS context, its requests and their answers, its storage)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from contracts.job_parts import TERMINAL
from tests.support.app_api import small_video
from tests.support.browser import SCAN_PAGE, browser_timeout, key_secret, record_traffic
from tests.support.dashboard import ThreadedStack
from tests.support.http import bound_socket, serve

pytestmark = [browser_timeout(240), pytest.mark.slow]
PAGE = Path(__file__).resolve().parents[2] / "fixtures" / "app_page" / "index.html"


def app_server(gateway_url: str, api_key: str, video: bytes) -> Starlette:
    """The app builder's own server: its page, a video to upload, and ``POST /token``, which mints a
    short-lived token with the API key it alone holds."""

    async def page(_: Request) -> Response:
        return FileResponse(PAGE)

    async def clip(_: Request) -> Response:
        return Response(video, media_type="video/mp4")

    async def token(_: Request) -> Response:
        scopes = ["uploads:write", "jobs:write", "events:read"]
        body = {"scopes": scopes, "kinds": ["lap_compare"], "subject": "visitor-1", "ttl_s": 600}
        async with httpx.AsyncClient(timeout=30) as http:
            minted = await http.post(
                f"{gateway_url}/v1/tokens", json=body, headers={"Authorization": f"Bearer {api_key}"}
            )
        minted.raise_for_status()
        return JSONResponse({"token": minted.json()["token"], "api": gateway_url})

    return Starlette(routes=[Route("/", page), Route("/video.mp4", clip), Route("/token", token, methods=["POST"])])


def test_a_page_on_another_origin_runs_a_job_with_a_minted_token(
    stack: ThreadedStack, chromium: Any, tmp_path: Path
) -> None:
    gateway, key = stack.env["GPURELAY_URL"], stack.env["GPURELAY_API_KEY"]
    sock = bound_socket()
    origin = f"http://localhost:{sock.getsockname()[1]}"  # another host name and port: another origin
    allowed = httpx.put(f"{gateway}/v1/cors", json={"origins": [origin]}, headers={"Authorization": f"Bearer {key}"})
    assert allowed.status_code == 200, allowed.text
    seen: list[str] = []
    with serve(app_server(gateway, key, small_video(tmp_path)), sock):
        context = chromium.new_context()
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            record_traffic(page, seen)
            page.goto(origin + "/")
            page.wait_for_function("document.getElementById('state').textContent.startsWith('job.')", timeout=180_000)
            assert page.inner_text("#state") == "job.succeeded", errors
            events = page.evaluate("window.appEvents")
            assert events[-1] == "job.succeeded"
            assert "job.created" in events
            in_page = page.evaluate(SCAN_PAGE)
            storage = json.dumps(context.storage_state())
            job_id = page.evaluate("window.jobId")
        finally:
            context.close()
    secret = key_secret(key)
    for where, text in (
        ("the page's JS context", in_page),
        ("its storage", storage),
        ("its requests", "\n".join(seen)),
    ):
        assert key not in text, where
        assert secret not in text, where
    assert any(f"/v1/jobs/{job_id}/events?token=" in line for line in seen)
    assert any(line.startswith(f"POST {gateway}/v1/jobs ") and "Bearer ey" in line for line in seen)
    job = job_when_ended(gateway, key, job_id)
    assert (job["status"], job["subject"]) == ("succeeded", "visitor-1")


def job_when_ended(gateway: str, key: str, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The job as ``GET /v1/jobs/{id}`` shows it once it has ended (or after ``timeout_s``): the record follows
    the stream the page read (on a loaded machine it said running as the page showed job.succeeded)."""
    deadline, headers = time.monotonic() + timeout_s, {"Authorization": f"Bearer {key}"}
    while True:
        job: dict[str, Any] = httpx.get(f"{gateway}/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.1)
