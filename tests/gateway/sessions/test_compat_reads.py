"""The seed's compat routes a robot loop calls at its own rate (a frame, a joint sample) reuse the
session's record as the native frame route does (``session_record_cache_s``) instead of reading it from
KV on every request; a stop this gateway passed on is in force for them at once all the same."""

from __future__ import annotations

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from contracts.streams import KV_JOBS
from contracts.subjects import Namespace
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import jpeg

ANGLES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"session_record_cache_s": 60.0, "session_max_frames_per_s": 1000.0}


async def test_frames_and_joint_samples_read_the_record_once_and_a_stop_refuses_them_at_once(
    gateway: Gateway, acme: Tenant, nc: NatsClient, namespace: Namespace
) -> None:
    session = (await acme.http.post("/v1/sessions", json={"kind": "splat"})).json()
    compat, stream = session["urls"]["compat"], f"KV_{namespace.bucket(KV_JOBS)}"
    reads: list[str] = []

    async def seen(msg: Msg) -> None:
        reads.append(msg.subject)

    for subject in (
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    ):
        await nc.subscribe(subject, cb=seen)
    await nc.flush()
    async with httpx.AsyncClient(timeout=30) as seed:
        for k in range(10):
            joints = await seed.post(f"{compat}/update-joint-angles", json={"joint_angles": ANGLES})
            assert joints.json() == {"success": True, "joint_angles": ANGLES}
            frame = await seed.post(f"{compat}/upload-frame", files={"file": ("f.jpg", jpeg(k), "image/jpeg")})
            assert frame.status_code == 200, frame.text
            assert frame.json()["frame_count"] == k + 1
        await nc.flush()
        assert len(reads) <= 1, reads  # the first request's read, if the start left none cached (before: 20)
        stopped = await acme.http.post(f"/v1/sessions/{session['id']}/stop")
        assert stopped.status_code == 202, stopped.text
        late_joints = await seed.post(f"{compat}/update-joint-angles", json={"joint_angles": ANGLES})
        late_frame = await seed.post(f"{compat}/upload-frame", files={"file": ("f.jpg", jpeg(10), "image/jpeg")})
    for late in (late_joints, late_frame):  # the record cached for a minute still shows it running
        assert late.status_code == 409, late.text
        assert late.json()["success"] is False
