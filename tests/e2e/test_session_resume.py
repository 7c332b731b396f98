"""A live session outlives its worker: the echo workload SIGKILLed through the whole embedded stack, on both
worker paths (the local pool reading NATS, and a Modal-like child process fed by the gateway's socket).

``starting`` until the workload is ready, then ``live`` (``session.ready``); a killed worker's session is
taken over by a new attempt that restores the newest snapshot, replays the frames sent after it before
live ones (each once) and says so with ``session.resumed`` on the socket, on SSE and to a webhook; the
session keeps its id and URLs, and its slot (a session queued behind it waits on). A worker killed once
more than the route's retries fails the session (``worker_lost``), and so does a killed worker whose
workload cannot resume, without another attempt.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import SessionStack, events, receiver, record_when, settled
from tests.support.sessions import jpeg, next_json, open_socket

pytestmark = pytest.mark.timeout(150)
WAIT_S = 60.0


async def start(api: httpx.AsyncClient, kind: str = "splat", **body: Any) -> dict[str, Any]:
    created = await api.post("/v1/sessions", json={"kind": kind, **body})
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


class Socket:
    """A session socket: every event kept in order; waits on what comes."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.acks: list[int] = []

    async def until(self, done: Any, timeout_s: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                message = await next_json(self.ws, timeout_s, skip=("control",))
                assert message["type"] != "error", message
                if message["type"] == "ack":
                    self.acks.append(message["seq"])
                elif message["type"] == "event":
                    self.events.append(message["event"])

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == type_]

    async def event(self, type_: str, count: int = 1) -> dict[str, Any]:
        await self.until(lambda: len(self.of(type_)) >= count)
        return self.of(type_)[count - 1]

    async def frame(self, api: httpx.AsyncClient, session: dict[str, Any], seq: int, t0: float) -> None:
        """Joints for frame ``seq`` to the session's robot, then the frame over the socket (acked)."""
        sample = {"joint_angles": [0.01 * seq] * 6, "ts": t0 + seq}
        assert (await api.post(f"/v1/robots/{session['robot_id']}/joints", json=sample)).status_code == 202
        await self.ws.send(json.dumps({"type": "frame", "ts": t0 + seq + 0.01}))
        await self.ws.send(jpeg(seq))
        await self.until(lambda: seq in self.acks)


def kill(marks: Path, session_id: str, attempt: int) -> None:
    """SIGKILL the process the echo workload of ``attempt`` runs in (it left its pid in ``marks``)."""
    (mark,) = list(marks.glob(f"{session_id}.a{attempt}.*"))
    os.kill(int(mark.read_text()), signal.SIGKILL)


def joints_of(seq: int) -> list[float]:
    return [0.01 * seq] * 6


@pytest.mark.parametrize("session_stack", [{"ready_gate": True}], indirect=True)
async def test_a_session_is_starting_until_its_workload_is_ready_and_holds_the_frames_sent_meanwhile(
    session_stack: SessionStack, tmp_path: Path
) -> None:
    env, api = session_stack
    session = await start(api, params={"frame_buffer": 2, "start_buffer": 8})
    sid = session["id"]
    async with open_socket(session["urls"]["stream"] + "?after=1", env["GPURELAY_API_KEY"]) as ws:
        sock = Socket(ws)
        await sock.event("job.started")  # the worker runs; its workload is not ready
        await record_when(env, sid, lambda r: r.status == "running")
        assert (await api.get(f"/v1/sessions/{sid}")).json()["state"] == "starting"
        async with httpx.AsyncClient(base_url=session["urls"]["compat"], timeout=30) as seed:
            assert (await seed.get("/health")).json() == {"status": "healthy", "trainer_ready": False}
            for seed_number in range(1, 11):
                sent = await api.post(session["urls"]["frames"], content=jpeg(seed_number))
                assert sent.status_code == 202
            (tmp_path / f"{sid}.go").touch()
            ready = await sock.event("session.ready")
            assert (ready["attempt"], ready["frames_held"]) == (1, 8)  # 10 sent, the start buffer holds 8
            await record_when(env, sid, lambda r: r.session_state == "live")
            assert (await seed.get("/health")).json()["trainer_ready"] is True
        await sock.event("session.result", 8)
        await ws.send(json.dumps({"type": "stop"}))
        done = await sock.event("job.succeeded")
    assert done["result"]["seqs"] == list(range(3, 11))  # every frame held, the oldest two dropped, counted
    await settled(env, sid)  # the socket can be ahead of the record's fold of the last progress
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    assert (shown["frames_received"], shown["frames_processed"], shown["frames_dropped"]) == (10, 8, 2)
    assert shown["load_s"] == ready["load_s"] > 0


async def test_a_killed_workers_session_resumes_from_its_snapshot_and_replays_the_frames_after_it(
    resume_stack: SessionStack, tmp_path: Path
) -> None:
    env, api = resume_stack
    t0 = time.time() - 100
    with receiver(asyncio.get_running_loop()) as hook:
        registered = await api.post("/v1/webhooks", json={"url": hook.url, "events": ["session.resumed"]})
        assert registered.status_code == 201, registered.text
        hook.secret = registered.json()["secret"]
        session = await start(api, robot_id="arm-resume", params={"joint_tolerance_ms": 200})
        sid = session["id"]
        async with open_socket(session["urls"]["stream"] + "?after=1", env["GPURELAY_API_KEY"]) as ws:
            sock = Socket(ws)
            ready = await sock.event("session.ready")
            assert (ready["attempt"], ready["resumable"]) == (1, True)
            live = await record_when(env, sid, lambda r: r.session_state == "live")
            assert live.session is not None
            assert live.session.ready_attempt == 1
            for seq in range(1, 6):
                await sock.frame(api, session, seq, t0)
            await sock.event("session.result", 5)  # frame 5 came after the newest snapshot (seq 4)
            assert [s["seq"] for s in sock.of("session.snapshot")][-1] == 4
            kill(tmp_path, sid, attempt=1)
            retrying = await sock.event("job.retrying")
            assert retrying["reason"] == "worker_lost"
            for seq in range(6, 8):  # while no worker runs: stored, acked, processed after the resume
                await sock.frame(api, session, seq, t0)
            resumed = await sock.event("session.resumed")
            assert (resumed["attempt"], resumed["from_seq"], resumed["frames_lost"]) == (2, 4, 0)
            assert 1 <= resumed["frames_replayed"] <= 3  # frame 5, and 6 and 7 unless they came after the ready
            assert resumed["gap_s"] > 0
            assert (await sock.event("session.ready", 2))["attempt"] == 2
            for seq in range(8, 10):
                await sock.frame(api, session, seq, t0)
            await ws.send(json.dumps({"type": "stop"}))
            done = await sock.event("job.succeeded")
        delivered = await hook.until(sid, "session.resumed")
    result = done["result"]
    assert result["seqs"] == list(range(1, 10))  # each frame once: the snapshot's, then the replay, then live
    assert result["joints"] == [joints_of(seq) for seq in range(1, 10)]
    by_chunk = {r["chunk"]: r["first_seq"] for r in sock.of("session.result")}
    assert by_chunk == {seq: seq for seq in range(1, 10)}  # frame 5's result came twice, under one number
    resumed_hooks = [d for d in delivered if d.envelope["type"] == "session.resumed"]
    assert len(resumed_hooks) == 1
    assert resumed_hooks[0].valid
    assert resumed_hooks[0].envelope["data"] == resumed
    record = await settled(env, sid)
    assert (record.status, record.attempt) == ("succeeded", 2)
    assert record.session is not None
    assert (record.session.resumes, record.session.ready_attempt) == (1, 2)
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    counts = (shown["frames_received"], shown["frames_processed"])
    assert (shown["id"], shown["state"], counts) == (sid, "succeeded", (9, 9))
    assert (shown["attempt"], shown["resumes"], shown["ready_at"] is not None) == (2, 1, True)
    sse = [e.type for e in await events(env, sid)]
    assert sse.count("session.resumed") == 1
    assert sse.index("job.retrying") < sse.index("session.resumed") < sse.index("job.succeeded")


@pytest.mark.parametrize("resume_stack", [{"concurrency": 1}], indirect=True)
async def test_a_killed_workers_session_resumes_in_its_slot_before_the_session_queued_behind_it(
    resume_stack: SessionStack, tmp_path: Path
) -> None:
    env, api = resume_stack
    first = (await start(api, robot_id="arm-first"))["id"]
    await record_when(env, first, lambda r: r.session_state == "live", timeout_s=WAIT_S)
    second = (await start(api, robot_id="arm-second"))["id"]
    # one slot: it waits behind the first
    await record_when(env, second, lambda r: r.status == "queued", timeout_s=WAIT_S)
    kill(tmp_path, first, attempt=1)
    # the lost session's slot goes to its resume, not to the session queued behind it: one slot, so the
    # resume being live means the second still waits (before, it took the slot for as long as it lived)
    resumed = await record_when(
        env, first, lambda r: r.session is not None and r.session.ready_attempt == 2, timeout_s=WAIT_S
    )
    assert (resumed.status, resumed.session_state) == ("running", "live")
    assert (await api.get(f"/v1/jobs/{second}")).json()["status"] == "queued"
    assert (await api.post(f"/v1/sessions/{first}/stop")).status_code == 202
    assert (await settled(env, first, timeout_s=WAIT_S)).status == "succeeded"
    await record_when(env, second, lambda r: r.session_state == "live", timeout_s=WAIT_S)  # then the slot is its
    assert (await api.post(f"/v1/sessions/{second}/stop")).status_code == 202
    assert (await settled(env, second, timeout_s=WAIT_S)).status == "succeeded"


async def test_a_worker_killed_once_more_than_the_retries_fails_the_session(
    resume_stack: SessionStack, tmp_path: Path
) -> None:
    env, api = resume_stack
    session = await start(api, robot_id="arm-twice")
    sid = session["id"]
    async with open_socket(session["urls"]["stream"] + "?after=1", env["GPURELAY_API_KEY"]) as ws:
        sock = Socket(ws)
        await sock.event("session.ready")
        kill(tmp_path, sid, attempt=1)
        await sock.event("session.resumed")
        await sock.event("session.ready", 2)
        kill(tmp_path, sid, attempt=2)
        failed = await sock.event("job.failed")
    assert failed["error"]["code"] == "worker_lost"
    record = await settled(env, sid)
    assert (record.status, record.attempt) == ("failed", 2)


async def test_a_workload_that_cannot_resume_fails_as_before(resume_stack: SessionStack, tmp_path: Path) -> None:
    env, api = resume_stack
    session = await start(api, "vlm")  # the route runs the echo's non-resumable twin
    sid = session["id"]
    async with open_socket(session["urls"]["stream"] + "?after=1", env["GPURELAY_API_KEY"]) as ws:
        sock = Socket(ws)
        assert (await sock.event("session.ready"))["resumable"] is False
        await record_when(env, sid, lambda r: r.session is not None and r.session.resumable is False)
        kill(tmp_path, sid, attempt=1)
        failed = await sock.event("job.failed")
    assert failed["error"]["code"] == "worker_lost"
    record = await settled(env, sid)
    assert (record.status, record.attempt) == ("failed", 1)  # no other attempt was started
    assert "job.retrying" not in [e.type for e in await events(env, sid)]
