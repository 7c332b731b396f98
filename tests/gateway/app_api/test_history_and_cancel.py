"""Reading and acting in bulk: 10,000 joint samples read back in pages, in order, none missing (and
bounded by since/until); 200 queued jobs canceled by one filter, idempotently."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from contracts.job_parts import JobStatus
from tests.support.app_api import AppStack, lap_spec, record_when, records_when, small_video, upload_file

SAMPLES = 10_000
BATCH = 1000
PAGE = 700


async def test_ten_thousand_samples_come_back_in_pages_in_order(stack: AppStack) -> None:
    for start in range(0, SAMPLES, BATCH):
        batch = [{"joint_angles": [((start + i) % 600) / 100.0] * 6, "seq": start + i} for i in range(BATCH)]
        posted = await stack.api.post("/v1/robots/arm-7/joints", json={"samples": batch})
        assert (posted.status_code, posted.json()) == (202, {"accepted": BATCH})
    reader = stack.client(await stack.mint(["robots:read"], robot_id="arm-7"))
    seqs: list[int] = []
    stream_seqs: list[int] = []
    received: list[datetime] = []
    cursor: str | None = None
    pages = 0
    async with reader:
        while True:
            params = {"limit": PAGE} | ({"cursor": cursor} if cursor else {})
            page = (await reader.get("/v1/robots/arm-7/joints", params=params)).json()
            pages += 1
            assert len(page["items"]) <= PAGE
            seqs += [item["sample"]["seq"] for item in page["items"]]
            stream_seqs += [item["seq"] for item in page["items"]]
            received += [datetime.fromisoformat(item["received_at"]) for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seqs == list(range(SAMPLES))
        assert stream_seqs == sorted(stream_seqs)
        assert pages == -(-SAMPLES // PAGE)
        middle = received[SAMPLES // 2]
        bounded = (
            await reader.get(
                "/v1/robots/arm-7/joints",
                params={"since": middle.isoformat(), "until": middle.isoformat(), "limit": 10},
            )
        ).json()
        assert bounded["items"] == []
        since = (await reader.get("/v1/robots/arm-7/joints", params={"since": middle.isoformat(), "limit": 5})).json()
        assert all(datetime.fromisoformat(i["received_at"]) >= middle for i in since["items"])
        assert since["items"][0]["sample"]["seq"] == seqs[received.index(middle)]
        assert (await reader.get("/v1/robots/arm-7/joints", params={"cursor": "bad"})).status_code == 422
        assert (await reader.get("/v1/robots/arm-7/joints", params={"limit": 1001})).status_code == 422
        assert (await reader.get("/v1/robots/arm-8/joints")).status_code == 403
    listed = (await stack.api.get("/v1/robots")).json()["items"]
    assert [(r["id"], r["joint_count"], r["session"]) for r in listed] == [("arm-7", 6, None)]


async def test_two_hundred_queued_jobs_are_canceled_by_one_filter(stack: AppStack, tmp_path: Path) -> None:
    upload = await upload_file(stack.api, small_video(tmp_path))
    batch = {"jobs": [{"spec": lap_spec(upload, delay_s=3600)} for _ in range(200)]}
    created = (await stack.api.post("/v1/jobs:batch", json=batch)).json()["results"]
    ids = [r["job"]["id"] for r in created]
    assert len(set(ids)) == 200
    kept = (await stack.api.post("/v1/jobs", json=lap_spec(upload))).json()["id"]  # not delayed: it runs
    await records_when(stack, ids, lambda r: r.status is JobStatus.QUEUED)
    # Out of the queue before the filter is applied (a loaded machine kept it queued: the filter took it too).
    await record_when(stack, kept, lambda r: r.status not in (JobStatus.CREATED, JobStatus.QUEUED), 120)
    response = await stack.api.post("/v1/jobs:cancel", json={"filter": {"kind": "lap_compare", "status": "queued"}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["more"] is False
    outcomes = {r["id"]: r["outcome"] for r in answer["results"]}
    assert set(ids) <= set(outcomes)
    assert {outcomes[i] for i in ids} == {"requested"}
    canceled = await records_when(stack, ids, lambda r: r.terminal, 60)
    assert {r.status for r in canceled} == {JobStatus.CANCELED}
    again = (await stack.api.post("/v1/jobs:cancel", json={"ids": ids})).json()["results"]
    assert [(r["id"], r["outcome"], r["status"]) for r in again] == [(i, "ended", "canceled") for i in ids]
    done = await record_when(stack, kept, lambda r: r.terminal, 120)
    assert done.status is JobStatus.SUCCEEDED
    assert (
        await stack.api.post("/v1/jobs:cancel", json={"ids": [f"job_{i:032x}" for i in range(1001)]})
    ).status_code == 422
    assert (await stack.api.post("/v1/jobs:cancel", json={"filter": {"status": "succeeded"}})).status_code == 422
    assert (await stack.api.post("/v1/jobs:cancel", json={})).status_code == 422
