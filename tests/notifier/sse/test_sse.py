"""Server-Sent Events end to end: replay, resume, live, close at terminal, auth, tenants, filters."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.secrets import SIGNING_SECRET
from bench.harness.waiting import wait_for
from contracts.events.jobs import JobLogPayload, JobProgressPayload
from contracts.events.registry import EventType, make_event
from contracts.subjects import Subjects
from services.common.auth.apikeys import ApiKeyStore, Principal
from services.common.auth.scoped import stream_token
from tests.notifier.sse.client import SseReader
from tests.support.events import create_job, job_event, publish
from tests.support.notifier import Notifier, sse_streams


@pytest.fixture
async def acme_http(notifier: Notifier, keys: ApiKeyStore) -> AsyncIterator[httpx.AsyncClient]:
    """A notifier client with an API key of tenant acme."""
    _, key = await keys.create("acme")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=notifier.url, headers=headers, timeout=30) as client:
        yield client


async def _publish_logs(js: JetStreamContext, subjects: Subjects, job_id: str, n: int) -> list[int]:
    return [await publish(js, subjects, job_event("acme", job_id, EventType.JOB_LOG)) for _ in range(n)]


async def test_replay_then_live_then_close_after_terminal(
    acme_http: httpx.AsyncClient,
    notifier: Notifier,
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
) -> None:
    job_id = await create_job(jobs_kv, "acme")
    other = await create_job(jobs_kv, "acme")
    seqs = await _publish_logs(js, subjects, job_id, 3)
    await _publish_logs(js, subjects, other, 2)
    async with acme_http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response.aiter_lines())
        hello = [await reader.next(comments=True), await reader.next(comments=True)]
        assert [f.comment if f else None for f in hello] == ["gpurelay events", None]
        assert hello[1] is not None
        assert hello[1].retry == 3000
        replayed = await reader.take(3)
        assert [int(f.id or 0) for f in replayed] == seqs
        assert {f.event for f in replayed} == {"job.log"}
        assert all(f.envelope["job_id"] == job_id for f in replayed)
        ping = await reader.next(timeout_s=5, comments=True)  # heartbeat comment every second
        assert ping is not None
        assert ping.comment
        live = job_event("acme", job_id, EventType.JOB_PROGRESS)
        await publish(js, subjects, live)
        frame = (await reader.take(1))[0]
        assert (frame.event, frame.envelope["id"]) == ("job.progress", live.id)
        await publish(js, subjects, job_event("acme", job_id, EventType.JOB_SUCCEEDED))
        assert (await reader.take(1))[0].event == "job.succeeded"
        assert await reader.next() is None  # the stream closes after the terminal event

    async def freed() -> bool:
        return await sse_streams(notifier, js) == 0

    await wait_for(freed, what="the stream's consumer or tap freed")


async def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(
    acme_http: httpx.AsyncClient, js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue
) -> None:
    job_id = await create_job(jobs_kv, "acme")
    seqs = await _publish_logs(js, subjects, job_id, 30)
    seqs.append(await publish(js, subjects, job_event("acme", job_id, EventType.JOB_SUCCEEDED)))
    got: list[int] = []
    cut = random.randint(1, 29)
    async with acme_http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        got += [int(f.id or 0) for f in await SseReader(response.aiter_lines()).take(cut)]
    headers = {"Last-Event-ID": str(got[-1])}
    async with acme_http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        reader = SseReader(response.aiter_lines())
        while (frame := await reader.next()) is not None:
            got.append(int(frame.id or 0))
    assert got == seqs
    async with acme_http.stream("GET", f"/v1/jobs/{job_id}/events?after={seqs[-2]}") as response:
        assert [int(f.id or 0) for f in await SseReader(response.aiter_lines()).take(1)] == [seqs[-1]]


async def test_stream_token_opens_only_its_job_and_other_tenants_get_404(
    notifier: Notifier,
    acme_http: httpx.AsyncClient,
    keys: ApiKeyStore,
    js: JetStreamContext,
    subjects: Subjects,
    jobs_kv: KeyValue,
) -> None:
    job_id = await create_job(jobs_kv, "acme")
    other = await create_job(jobs_kv, "acme")
    await publish(js, subjects, job_event("acme", job_id, EventType.JOB_SUCCEEDED))
    secret = SIGNING_SECRET.encode()
    record, _ = await keys.create("acme")
    minter = Principal(tenant="acme", key_id=record.key_id)
    token = stream_token(secret, minter, job_id, 60)
    async with httpx.AsyncClient(base_url=notifier.url, timeout=30) as anonymous:
        async with anonymous.stream("GET", f"/v1/jobs/{job_id}/events?token={token}") as response:
            assert response.status_code == 200
            assert (await SseReader(response.aiter_lines()).take(1))[0].event == "job.succeeded"
        assert (await anonymous.get(f"/v1/jobs/{other}/events?token={token}")).status_code == 401
        assert (await anonymous.get(f"/v1/events?token={token}")).status_code == 401
        assert (await anonymous.get(f"/v1/jobs/{job_id}/events")).status_code == 401
        expired = stream_token(secret, minter, job_id, -1)
        assert (await anonymous.get(f"/v1/jobs/{job_id}/events?token={expired}")).status_code == 401
        _, globex_key = await keys.create("globex")
        globex = {"Authorization": f"Bearer {globex_key}"}
        response = await anonymous.get(f"/v1/jobs/{job_id}/events", headers=globex)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert (await acme_http.get("/v1/jobs/job_nope/events")).status_code == 404
    assert (await acme_http.get("/v1/jobs/bad.id/events")).status_code == 404


async def test_tenant_stream_is_filtered_and_scoped(
    acme_http: httpx.AsyncClient, js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue
) -> None:
    mine = await create_job(jobs_kv, "acme")
    theirs = await create_job(jobs_kv, "globex")
    await publish(js, subjects, job_event("globex", theirs, EventType.JOB_SUCCEEDED))
    await _publish_logs(js, subjects, mine, 2)
    done = await publish(js, subjects, job_event("acme", mine, EventType.JOB_SUCCEEDED))
    url = "/v1/events?types=job.succeeded,job.failed&kinds=pose"
    async with acme_http.stream("GET", url) as response:
        frame = (await SseReader(response.aiter_lines()).take(1))[0]
    assert (frame.event, int(frame.id or 0), frame.envelope["tenant"]) == ("job.succeeded", done, "acme")
    nerf = make_event(
        EventType.JOB_LOG, JobLogPayload(message="n"), tenant="acme", source="t", job_id=mine, kind="nerf"
    )
    nerf_seq = await publish(js, subjects, nerf)
    async with acme_http.stream("GET", "/v1/events?kinds=nerf", headers={"Last-Event-ID": "1"}) as response:
        frame = (await SseReader(response.aiter_lines()).take(1))[0]
    assert (int(frame.id or 0), frame.envelope["kind"]) == (nerf_seq, "nerf")
    async with acme_http.stream("GET", f"/v1/sessions/{mine}/events") as response:
        assert len(await SseReader(response.aiter_lines()).take(3)) == 3


@pytest.mark.parametrize("notifier_overrides", [{"sse_progress_max_per_s": 2.0}])
async def test_progress_is_coalesced_to_the_latest(
    acme_http: httpx.AsyncClient, js: JetStreamContext, subjects: Subjects, jobs_kv: KeyValue
) -> None:
    job_id = await create_job(jobs_kv, "acme")
    for i in range(1, 51):
        payload = JobProgressPayload(fraction=i / 50)
        await publish(js, subjects, job_event("acme", job_id, EventType.JOB_PROGRESS, payload))
    await publish(js, subjects, job_event("acme", job_id, EventType.JOB_LOG))
    async with acme_http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        reader = SseReader(response.aiter_lines())
        frames = []
        while (frame := await reader.next(timeout_s=3)) is not None and frame.event != "job.log":
            frames.append(frame)
    fractions = [f.envelope["data"]["fraction"] for f in frames]
    assert len(fractions) <= 3
    assert fractions[-1] == 1.0  # always the latest
    assert fractions == sorted(fractions)
