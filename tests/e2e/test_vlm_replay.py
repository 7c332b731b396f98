"""A vlm session replayed with another prompt, on the real vlm workload (the tiny random Gemma 3): the
comparison holds each chunk's answers side by side (as each run's results said), both runs' latency
p50 and p99 (from their results) and the alerts each fired.

The original is fed a chunk at a time (each answered before the next), so it has one result per
chunk; the replay takes the frames as fast as its worker does, so its chunks may coalesce when the
model falls behind: the comparison pairs whatever chunks each run had, by number."""

from __future__ import annotations

import json
import statistics
from typing import Any

import httpx
import pytest

from tests.e2e.support import SessionStack, download, record_when, settled
from tests.support.sessions import jpeg

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
FRAMES, CHUNK = 8, 2


async def created(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.post(path, json=body)
    assert answer.status_code == 201, answer.text
    out: dict[str, Any] = answer.json()
    return out


def p(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method), a single value being every percentile."""
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3)


async def test_a_vlm_replay_compares_answers_latency_and_alerts(vlm_stack: SessionStack) -> None:
    env, api = vlm_stack
    params = {"chunk_frames": CHUNK, "chunk_seconds": 30, "max_new_tokens": 4, "alert": {"pattern": "."}}
    sid = (await created(api, "/v1/sessions", {"kind": "vlm", "params": params}))["id"]
    for i in range(FRAMES):
        sent = await api.post(f"/v1/sessions/{sid}/frames", content=jpeg(i), headers={"Content-Type": "image/jpeg"})
        assert sent.status_code == 202
        if (i + 1) % CHUNK == 0:  # this chunk answered before the next one's frames
            await record_when(env, sid, lambda r, n=i + 1: r.session is not None and r.session.last_result_seq >= n, 90)
    assert (await api.post(f"/v1/sessions/{sid}/stop")).status_code == 202
    assert (await settled(env, sid, 60)).status == "succeeded"

    body = {"params": {"prompt": "What moves?", "alert": None}, "speed": "max"}
    replay = await created(api, f"/v1/sessions/{sid}/replay", body)
    assert (await settled(env, replay["id"], 90)).status == "succeeded"
    artifacts = {a["name"]: a for a in (await api.get(f"/v1/jobs/{replay['id']}")).json()["artifacts"]}
    comparison = json.loads(await download(artifacts["comparison.json"]))
    original = (await api.get(f"/v1/sessions/{sid}/recording")).json()
    replayed = (await api.get(f"/v1/sessions/{replay['id']}/recording")).json()
    assert [(r["first_seq"], r["last_seq"]) for r in original["results"]] == [
        (CHUNK * n + 1, CHUNK * n + CHUNK) for n in range(FRAMES // CHUNK)
    ]
    assert [f["seq"] for f in replayed["frames"]] == list(range(1, FRAMES + 1))
    assert replayed["results"]
    by_chunk = {c["chunk"]: c for c in comparison["chunks"]}
    assert sorted(by_chunk) == list(range(1, max(len(original["results"]), len(replayed["results"])) + 1))
    assert [by_chunk[r["chunk"]]["original"] for r in original["results"]] == [r["text"] for r in original["results"]]
    assert [by_chunk[r["chunk"]]["replay"] for r in replayed["results"]] == [r["text"] for r in replayed["results"]]
    alerted = {a["chunk"] for a in original["alerts"]}
    assert [c["original_alert"] for c in comparison["chunks"]] == [c["chunk"] in alerted for c in comparison["chunks"]]
    assert not any(c["replay_alert"] for c in comparison["chunks"])
    for run, recording in ((comparison["original"], original), (comparison["replay"], replayed)):
        latencies = [r["latency_ms"] for r in recording["results"]]
        assert (run["latency_ms_p50"], run["latency_ms_p99"]) == (p(latencies, 50), p(latencies, 99))
        assert run["alerts"] == len(recording["alerts"])
    assert comparison["original"]["alerts"] == sum(bool(r["text"]) for r in original["results"])
    assert comparison["replay"]["params"]["prompt"] == "What moves?"
