"""The whole embedded stack end to end: nats-server, gateway, dispatcher with its local pool,
notifier and local storage, all in one :class:`~services.cli.dev.DevStack`, over real HTTP.

A lap_compare job is followed through its SSE stream and a registered webhook (signatures checked
with ``standardwebhooks``); its artifacts download through their pre-signed URLs. A second test
restarts the stack on the same data dir between two jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from gpurelay_client import Event

from services.cli.dev import DevStack
from tests.e2e.support import auth, download, events, lap_job, receiver, settled
from tests.support.lap import frame_count, scrolling_video

pytestmark = pytest.mark.timeout(180)

FRAMES = 96
"""Frames of the big lap: 640x360 at full size takes long enough for ≥ 3 throttled progress events."""

ARTIFACTS = ["manifest.json", "metrics.json", "overlay.mp4", "overlay.webm"]


@asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    """A started :class:`DevStack` on ``data_dir`` (free ports) and an API client with the dev key."""
    stack = DevStack(data_dir=data_dir, port=0)
    try:
        env = await stack.start()
        async with httpx.AsyncClient(base_url=env["GPURELAY_URL"], headers=auth(env), timeout=30) as api:
            yield env, api
    finally:
        await stack.stop()


def lap(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """A texture scrolling 3 px per frame to the right (mp4v, 24 fps)."""
    return scrolling_video(path, [3.0 * k for k in range(frames)], size=size)


def milestones(types: list[str]) -> list[str]:
    """The events the acceptance names, in order, with each run of progress events collapsed."""
    kept = [t for t in types if t in ("job.started", "job.progress", "job.artifact", "job.succeeded")]
    return [t for i, t in enumerate(kept) if t != "job.progress" or i == 0 or kept[i - 1] != "job.progress"]


def stored(stream: list[Event]) -> list[str | None]:
    """The sequence ids of a stream's events but progress (SSE coalesces those by time)."""
    return [e.id for e in stream if e.type != "job.progress"]


async def test_a_lap_job_streams_its_events_to_sse_and_a_signed_webhook_and_its_artifacts_download(
    tmp_path: Path,
) -> None:
    video = await asyncio.to_thread(lap, tmp_path / "lap.mp4", FRAMES, (640, 360))
    with receiver(asyncio.get_running_loop()) as hook:
        async with running(tmp_path / "data") as (env, api):
            registered = await api.post("/v1/webhooks", json={"url": hook.url, "events": ["job.*"]})
            assert registered.status_code == 201, registered.text
            hook.secret = registered.json()["secret"]
            forged = {"webhook-id": "msg_forged", "webhook-timestamp": "1", "webhook-signature": "v1,Zm9yZ2Vk"}
            async with httpx.AsyncClient() as stranger:  # no API key: this is not the gateway
                await stranger.post(hook.url, content=b'{"job_id": "forged", "type": "job.x"}', headers=forged)
            assert not (await hook.until("forged", "job.x"))[0].valid, "the receiver must refuse a bad signature"
            job_id = await lap_job(api, video)
            stream = await events(env, job_id)
            delivered = await hook.until(job_id, "job.succeeded")
            await settled(env, job_id)
            record = (await api.get(f"/v1/jobs/{job_id}")).json()
            contents = {a["name"]: await download(a) for a in record["artifacts"]}

    sequences = [int(e.id or 0) for e in stream]
    assert sequences == sorted(set(sequences)), "stream sequence ids must increase"
    envelopes = [e.envelope.model_dump(mode="json", exclude_unset=True) for e in stream]
    types = [e.type for e in stream]
    assert [env_["type"] for env_ in envelopes] == types
    assert milestones(types) == ["job.started", "job.progress"] + ["job.artifact"] * len(ARTIFACTS) + [
        "job.succeeded"
    ], types
    assert types.count("job.progress") >= 3, types
    assert types[-1] == "job.succeeded"

    # The webhook got every event the stream showed (SSE may coalesce progress), same ids, same order.
    assert all(d.valid for d in delivered), [d.webhook_id for d in delivered if not d.valid]
    hook_ids = [d.webhook_id for d in delivered]
    assert hook_ids == [d.envelope["id"] for d in delivered]
    assert len(hook_ids) == len(set(hook_ids)), "a delivery was repeated"
    stream_ids = [e["id"] for e in envelopes]
    assert [i for i in hook_ids if i in set(stream_ids)] == stream_ids
    assert milestones([d.envelope["type"] for d in delivered]) == milestones(types)

    assert record["status"] == "succeeded", record
    assert record["result"]["frames"] == FRAMES
    sha = {e["data"]["name"]: e["data"]["sha256"] for e in envelopes if e["type"] == "job.artifact"}
    assert sorted(sha) == ARTIFACTS
    assert sorted(contents) == ARTIFACTS
    assert {a["name"]: a["sha256"] for a in record["artifacts"]} == sha
    overlay = tmp_path / "overlay.mp4"
    overlay.write_bytes(contents["overlay.mp4"])
    assert await asyncio.to_thread(frame_count, overlay) == FRAMES


async def test_a_restarted_stack_serves_the_first_jobs_record_events_and_artifacts_and_runs_another(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    video = await asyncio.to_thread(lap, tmp_path / "small.mp4", 24, (320, 180))
    async with running(data_dir) as (env, api):
        first = await lap_job(api, video, downscale_width=160)
        before = await events(env, first)
        assert before[-1].type == "job.succeeded"
        await settled(env, first)

    async with running(data_dir) as (env, api):
        record = (await api.get(f"/v1/jobs/{first}")).json()
        assert record["status"] == "succeeded", record
        assert sorted(a["name"] for a in record["artifacts"]) == ARTIFACTS
        replay = await events(env, first)
        assert stored(replay) == stored(before)
        assert replay[-1].type == "job.succeeded"
        for artifact in record["artifacts"]:
            assert artifact["url"].startswith(env["GPURELAY_URL"]), "signed for the running gateway"
            await download(artifact)
        second = await lap_job(api, video, downscale_width=160)
        after = await events(env, second)
        assert after[-1].type == "job.succeeded"
        assert int(after[0].id or 0) > int(before[-1].id or 0), "the stream goes on after the restart"
        assert (await settled(env, second)).status == "succeeded"
