"""A vlm session's start and a lost worker, through the whole embedded stack with the real ``vlm`` workload on
the local pool (the tiny random Gemma 3, loaded offline).

Frames sent the moment a session is created wait while its model loads (``starting``) and are all answered
once it is ready; a vlm worker SIGKILLed mid-session is resumed by a new attempt whose answers still carry
the earlier turns (restored from the conversation snapshot), the chunks after the snapshot replayed.

A worker's model load (a fresh process importing torch and transformers) took 43 s at load 20 on 2 cores
(a resumed attempt's was still under way after 67 s), so the waits that cover one are bounded by
:data:`LOAD_S`, not the socket's 60 s, and end at once if the session ends first.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx
import pytest

from tests.e2e.support import SessionStack, record_when, settled
from tests.e2e.test_session_resume import Socket
from tests.support.sessions import jpeg, open_socket

pytestmark = pytest.mark.timeout(360)
LOAD_S = 150.0
"""Longest wait for an event that comes once a worker loaded its model (``session.ready``, ``session.resumed``)."""
TERMINAL = ("job.succeeded", "job.failed", "job.canceled")


async def start(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    created = await api.post("/v1/sessions", json={"kind": "vlm", "params": params})
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


async def loaded(sock: Socket, type_: str) -> dict[str, Any]:
    """The socket's first ``type_`` event, one that comes once a worker loaded its model (bounded by
    :data:`LOAD_S`); a session that ended before it fails here with the events seen."""
    await sock.until(lambda: bool(sock.of(type_)) or any(e["type"] in TERMINAL for e in sock.events), LOAD_S)
    assert sock.of(type_), [(e["type"], e["data"]) for e in sock.events if e["type"] in TERMINAL]
    return sock.of(type_)[0]


def covered(results: list[dict[str, Any]]) -> set[int]:
    """Every frame seq some result spans."""
    return {seq for r in results for seq in range(r["first_seq"], r["last_seq"] + 1)}


async def test_16_frames_sent_the_moment_a_session_is_created_are_all_answered(vlm_stack: SessionStack) -> None:
    env, api = vlm_stack
    session = await start(api, max_new_tokens=4)
    sid = session["id"]
    for seed in range(1, 17):
        sent = await api.post(session["urls"]["frames"], content=jpeg(seed), headers={"Content-Type": "image/jpeg"})
        assert sent.status_code == 202
    async with open_socket(session["urls"]["stream"] + "?after=1", env["GPURELAY_API_KEY"]) as ws:
        sock = Socket(ws)
        ready = await loaded(sock, "session.ready")
        assert ready["load_s"] > 0
        await sock.until(lambda: covered(sock.of("session.result")) >= set(range(1, 17)))
        await ws.send(json.dumps({"type": "stop"}))
        done = await sock.event("job.succeeded")
    assert covered(sock.of("session.result")) == set(range(1, 17))
    assert done["result"]["frames_dropped"] == 0
    types = [e["type"] for e in sock.events]
    assert types.index("session.ready") < types.index("session.result")
    await settled(env, sid)  # the socket can be ahead of the record's fold
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    assert (shown["frames_received"], shown["frames_dropped"], shown["load_s"]) == (16, 0, ready["load_s"])


@pytest.mark.parametrize("vlm_stack", [{"resume": True}], indirect=True)
async def test_a_killed_vlm_workers_next_answers_carry_the_earlier_turns(vlm_stack: SessionStack) -> None:
    env, api = vlm_stack
    session = await start(api, chunk_frames=2, chunk_seconds=30, max_new_tokens=4)
    sid = session["id"]
    async with open_socket(session["urls"]["stream"] + "?after=1", env["GPURELAY_API_KEY"]) as ws:
        sock = Socket(ws)
        await loaded(sock, "session.ready")
        for number in (1, 2):  # a chunk's frames once the one before is answered: frames 3-4 closing while
            for seed in (2 * number - 1, 2 * number):  # chunk 1 waits for the model coalesce with it (one answer)
                await ws.send(jpeg(seed))
            await sock.event("session.snapshot", number)  # the conversation after this answer
        assert [r["data"]["context_turns"] for r in sock.of("session.result")] == [0, 1]
        running = await record_when(env, sid, lambda r: r.call_id is not None)
        os.kill(int(str(running.call_id).rpartition(":")[2]), signal.SIGKILL)
        for seed in range(5, 7):
            await ws.send(jpeg(seed))
        resumed = await loaded(sock, "session.resumed")  # a new worker process: its model loads again
        third = await sock.event("session.result", 3)
        await ws.send(json.dumps({"type": "stop"}))
        await sock.event("job.succeeded")
    assert (resumed["attempt"], resumed["from_seq"], resumed["frames_lost"]) == (2, 4, 0)
    assert (third["chunk"], third["first_seq"], third["last_seq"]) == (3, 5, 6)
    assert third["data"]["context_turns"] == 2  # chunks 1 and 2 answered by the lost worker
    record = await settled(env, sid)
    assert (record.status, record.attempt) == ("succeeded", 2)
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    assert shown["snapshot"]["name"] == "live/1-conversation.json"
    async with httpx.AsyncClient() as storage:
        conversation = (await storage.get(shown["snapshot"]["url"])).json()
    assert [turn["user"][:24] for turn in conversation["turns"]] == [
        "[chunk 0, frames 1-2] De",
        "[chunk 1, frames 3-4] De",
        "[chunk 2, frames 5-6] De",
    ]
