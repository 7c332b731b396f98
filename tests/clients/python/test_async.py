"""The asyncio client against the embedded stack: the same verbs as the blocking client's tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from gpurelay_client import AsyncClient, JobFailed, NotFound, UnprocessableEntity
from gpurelay_client._models import JobSucceededPayload

from tests.clients.python.stack import ThreadedStack
from tests.clients.python.test_sessions import jpeg

pytestmark = pytest.mark.timeout(120)
NOT_A_VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(4096)
"""Passes the gateway's magic-bytes check, decodes to nothing: the job fails."""


async def test_upload_create_stream_wait_list_and_download(
    stack: ThreadedStack, lap_video: Path, tmp_path: Path
) -> None:
    video_bytes, video_size = lap_video.read_bytes(), lap_video.stat().st_size  # noqa: ASYNC240 (a fixture's file)
    async with AsyncClient(stack.url, api_key=stack.new_key("async-jobs")) as client:
        sent: list[int] = []
        upload = await client.uploads.upload(lap_video, on_progress=lambda done, total: sent.append(done))
        job = await client.jobs.create("lap_compare", inputs={"video": upload}, params={"downscale_width": 160})
        events = [event async for event in client.jobs.stream(job)]
        done = await client.jobs.wait(job, timeout=60)
        again = await client.jobs.run("lap_compare", inputs={"video": video_bytes}, timeout=90)
        listed = [j.id async for j in client.jobs.list(limit=1)]
        paths = await client.jobs.download_artifacts(done, tmp_path)
    assert sent[-1] == video_size == upload.size
    assert events[-1].type == "job.succeeded"
    assert done.status == again.status == "succeeded"
    assert listed == [again.id, job.id]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths} == {
        a.name: a.sha256 for a in done.artifacts
    }


async def test_errors_and_a_failed_job(stack: ThreadedStack) -> None:
    async with AsyncClient(stack.url, api_key=stack.api_key) as client:
        with pytest.raises(NotFound):
            await client.jobs.get("job_0000000000000000000000000000dead")
        with pytest.raises(UnprocessableEntity) as invalid:
            await client.sessions.start("vlm", {"chunk_frames": 0})
        with pytest.raises(JobFailed) as failed:
            await client.jobs.run("lap_compare", inputs={"video": NOT_A_VIDEO}, timeout=90)
    assert [e.loc for e in invalid.value.errors] == [["body", "params", "chunk_frames"]]
    assert failed.value.status == "failed"


async def test_a_session_and_the_publisher(stack: ThreadedStack) -> None:
    async with AsyncClient(stack.url, api_key=stack.api_key) as client:
        async with await client.sessions.start("splat", {"idle_timeout_s": 60}) as session:
            acks = [await session.send_frame(jpeg(k)) for k in range(5)]
            acks.append(await session.send_frame(np.zeros((32, 32, 3), np.uint8)))
            keyed = [await session.send_frame(jpeg(9), idempotency_key="cam-9") for _ in range(2)]
            await session.stop()
            events = session.take_events() + [event async for event in session.events()]
        streamed = [event async for event in client.sessions.stream(session.id)]
        async with client.robots.publisher("arm-async", max_batch=4) as arm:
            for k in range(20):
                await arm.publish([0.01 * k] * 6)
        latest = await client.robots.latest("arm-async")
    assert [a.seq for a in acks] == [1, 2, 3, 4, 5, 6]
    assert [a.seq for a in keyed] == [7, 7]  # the app's own key: the frame sent again is the one stored
    results = [e.data.first_seq for e in events if e.type == "session.result"]
    assert results == [1, 2, 3, 4, 5, 6, 7]
    assert isinstance(events[-1].data, JobSucceededPayload)
    assert [e.id for e in events] == [e.id for e in streamed][-len(events) :]
    assert (arm.stats().sent, arm.stats().accepted, arm.stats().dropped) == (20, 20, 0)
    assert latest.joint_angles == pytest.approx([0.19] * 6)


async def test_a_stop_after_the_session_ended_elsewhere_is_not_an_error(stack: ThreadedStack) -> None:
    async with (
        AsyncClient(stack.url, api_key=stack.api_key) as client,
        await client.sessions.start("vlm", {"idle_timeout_s": 60}) as session,
    ):
        await session.send_frame(jpeg(1))
        await client.sessions.stop(session.id)  # the server closes the socket (1000) after the end
        final = [event async for event in session.events()][-1]
        await session._ws.wait_closed()  # the server's close is in: a send now fails
        await session.stop()  # the socket is closed: the session ended, which is what a stop asks
    assert isinstance(final.data, JobSucceededPayload)
    assert (final.data.result or {})["stopped"] == "requested"
