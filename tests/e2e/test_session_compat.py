"""The live-splat seed's clients, unchanged, against a splat session's ``urls.compat`` (echo workload).

The React component's fetch calls run under Node (:class:`~tests.e2e.seeds.SeedApp`: Vite's
``import.meta.env``, a canvas giving an OpenCV JPEG and the snippet's 3 s timer are the harness's;
the calls are the seed's) and the LeRobot ``requests`` snippet runs as written with its placeholder
URL replaced; both get the seed's shapes. After the session ends, the read routes keep answering
and the write routes answer 409 ``{success: false, error}``. CORS on the compat prefix follows the
allowlist.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.seeds import NODE, Answer, Policy, SeedApp, lerobot_snippet
from tests.e2e.support import SessionStack, events, record_when
from tests.support.sessions import jpeg

pytestmark = pytest.mark.timeout(120)
STATUS_KEYS = {"frame_count", "gaussian_count", "chunks_uploaded", "progress"}
JOINTS = [0.5, 1.2, -0.3, 0.0, 0.1, 0.5]  # the seed's curl example, radians


async def splat(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    """A new splat session, made as gpurelay's clients make one: a 503 (NATS did not answer in time, as a
    loaded machine's server once did for over 5 s) is tried again after its ``Retry-After``, at most twice,
    under the same ``Idempotency-Key``: one session, whatever a first try left."""
    body, headers = {"kind": "splat", "params": params}, {"Idempotency-Key": uuid.uuid4().hex}
    created, tries = await api.post("/v1/sessions", json=body, headers=headers), 1
    while created.status_code == 503 and tries < 3:
        await asyncio.sleep(float(created.headers["Retry-After"]))
        created, tries = await api.post("/v1/sessions", json=body, headers=headers), tries + 1
    made = (201,) if tries == 1 else (200, 201)  # a retry finds the first try's session (200) or makes it
    assert created.status_code in made, created.text
    session: dict[str, Any] = created.json()
    return session


def logged_body(answer: Answer, status: int = 200) -> Any:
    """The one response's JSON body: the status asked for, and what the snippet logged, if it logs."""
    response = answer.response
    assert response.status == status, (response.route, response.status, response.body[:300])
    body = response.json()
    assert answer.logs in ([], [body])
    return body


def status_shape(body: dict[str, Any], frames: int) -> None:
    assert set(body) == STATUS_KEYS
    assert body["frame_count"] == frames
    assert isinstance(body["gaussian_count"], int)
    assert isinstance(body["chunks_uploaded"], int)
    assert 0.0 <= body["progress"] <= 1.0


def refused(body: dict[str, Any]) -> None:
    assert body["success"] is False
    assert isinstance(body["error"], str)
    assert body["error"]


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the seed's React calls need it")
async def test_the_seeds_react_calls_get_the_seeds_shapes(session_stack: SessionStack, tmp_path: Path) -> None:
    env, api = session_stack
    session = await splat(api)
    sid = session["id"]
    async with SeedApp(session["urls"]["compat"], tmp_path) as app:
        await record_when(env, sid, lambda r: str(r.session_state) == "live")
        assert logged_body(await app.do("health")) == {"status": "healthy", "trainer_ready": True}
        for i in range(1, 4):
            upload = await app.do("upload", jpeg=jpeg(i))
            assert upload.result == {"asked": {"type": "image/jpeg", "quality": 0.8}}
            body = logged_body(upload)
            assert set(body) == {"success", "frame_count", "chunks_uploaded"}
            assert (body["success"], body["frame_count"], type(body["chunks_uploaded"])) == (True, i, int)
            assert len(upload.logs) == 1  # the snippet's console.log(result)

        record = await record_when(env, sid, lambda r: r.session is not None and r.session.snapshot_seq >= 2)
        ply = (await app.do("ply")).response
        assert ply.status == 200
        assert json.loads(ply.body)["seqs"][-1] == record.session.snapshot_seq  # type: ignore[union-attr]

        await record_when(env, sid, lambda r: r.progress.metrics.get("chunks") == 1)
        poll = await app.do("poll")
        assert poll.result == {"timers": [3000]}
        status = logged_body(poll)
        status_shape(status, 3)
        assert status["chunks_uploaded"] == 1

        assert logged_body(await app.do("reset")) == {"success": True}
        assert logged_body(await app.do("upload", jpeg=jpeg(9)))["frame_count"] == 4
        stop = await app.do("stop")
        assert stop.result == {"timers_left": 0}  # the snippet's clearInterval(pollStatus)
        assert logged_body(stop) == {"success": True, "chunks": ["chunks/001.json"], "complete": True}

        record = await record_when(env, sid, lambda r: r.terminal)
        assert record.status == "succeeded"
        assert record.result is not None
        assert (record.result["seqs"], record.result["resets"]) == ([4], 1)
        await ended_routes_answer(app)


async def ended_routes_answer(app: SeedApp) -> None:
    """After the end: status, PLY and health still answer; upload and reset are 409 ``{success: false}``."""
    assert (await app.do("poll")).result == {"timers": []}  # stopCapture cleared the snippet's timer
    status = await app.do("poll", cleared=True)  # its body once more, as a page still open would
    status_shape(logged_body(status), 4)
    again = await app.do("stop")  # a second click on Stop
    assert logged_body(again) == {"success": True, "chunks": ["chunks/001.json"], "complete": True}
    assert (await app.do("ply")).response.status == 200
    assert logged_body(await app.do("health")) == {"status": "healthy", "trainer_ready": False}
    refused(logged_body(await app.do("upload", jpeg=jpeg(10)), 409))
    refused(logged_body(await app.do("reset"), 409))


@pytest.mark.parametrize("session_path", ["gateway-feed"], indirect=True)
async def test_the_seeds_lerobot_snippet_reaches_the_sessions_robot(session_stack: SessionStack) -> None:
    env, api = session_stack
    # The frame waits for the snippet's sample up to the longest wait (5 s): at 2 s a loaded fresh-clone run
    # (xdist beside the e2e stack) matched it with no sample (joints None).
    session = await splat(api, joint_tolerance_ms=5000, joint_wait_ms=5000)
    compat, policy = session["urls"]["compat"], Policy(JOINTS)
    async with httpx.AsyncClient(timeout=30) as browser:
        files = {"file": ("frame.jpg", jpeg(1), "image/jpeg")}
        assert (await browser.post(f"{compat}/upload-frame", files=files)).status_code == 200
        seed = await asyncio.to_thread(lerobot_snippet, compat, policy)  # the frame waits for this sample
        assert policy.calls == 1
        assert list(seed["joint_state"]) == JOINTS
        answer = await asyncio.to_thread(seed["send_joint_angles"], seed["joint_state"])
        assert answer == {"success": True, "joint_angles": JOINTS}
        stopped = (await browser.post(f"{compat}/stop-training")).json()
    assert stopped["complete"] is True
    sse = await events(env, session["id"])
    matched = [e.envelope.data["data"]["joints"] for e in sse if e.type == "session.result"]
    assert matched == [JOINTS]
    refused(await asyncio.to_thread(seed["send_joint_angles"], seed["joint_state"]))


@pytest.mark.parametrize("session_path", ["gateway-feed"], indirect=True)
async def test_cors_on_the_compat_prefix_follows_the_allowlist(session_stack: SessionStack) -> None:
    _, api = session_stack
    compat = (await splat(api))["urls"]["compat"]
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    listed = "http://localhost:3000"  # the dev stack's allowlist (GPURELAY_CORS_ORIGINS' default)
    async with httpx.AsyncClient(timeout=30) as browser:
        allowed = await browser.options(f"{compat}/upload-frame", headers={"Origin": listed, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == listed
        simple = await browser.get(f"{compat}/status", headers={"Origin": listed})
        assert (simple.status_code, simple.headers["access-control-allow-origin"]) == (200, listed)
        other = await browser.options(f"{compat}/upload-frame", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        simple = await browser.get(f"{compat}/status", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize("session_path", ["local-pool"], indirect=True)
async def test_stop_training_of_a_canceled_session_is_refused(session_stack: SessionStack) -> None:
    env, api = session_stack
    session = await splat(api)
    assert (await api.post(session["urls"]["cancel"])).status_code == 202
    record = await record_when(env, session["id"], lambda r: r.terminal)
    assert record.status == "canceled"
    async with httpx.AsyncClient(timeout=30) as browser:
        stop = await browser.post(f"{session['urls']['compat']}/stop-training")
    assert stop.status_code == 409
    refused(stop.json())
