"""Streaming VLM sessions through the whole embedded stack: the real ``modal_workers.vlm:run`` on the
local pool, the tiny random Gemma 3 as the deployment's default model, loaded offline.

Over the socket every frame is acked in order; chunks close by count and by time; each chunk's
result comes on the socket, on SSE and (alerts) to a verified webhook with its seq range; the
conversation is carried (each prompt holds the earlier answers) and a reset empties it; a client
that reconnects keeps receiving results; a slow model makes frames coalesce while acks stay
immediate and the frames held stay bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.support import SessionStack, events_client, receiver, settled
from tests.support.sessions import jpeg, open_socket

pytestmark = pytest.mark.timeout(300)  # a model load may take LOAD_S on a loaded machine
WAIT_S = 60.0
LOAD_S = 150.0
"""The wait for a worker's model load (a fresh process imports torch and transformers: past 60 s at load 20)."""
TERMINAL = ("job.succeeded", "job.failed", "job.canceled")


class Socket:
    """A session socket: acks and events kept with their arrival times; waits on what comes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.acks: list[tuple[int, float]] = []
        self.events: list[tuple[dict[str, Any], float]] = []
        self.last_seq = 0

    async def until(self, done: Callable[[], bool], within_s: float = WAIT_S) -> None:
        """Read until ``done()`` holds (bounded)."""
        async with asyncio.timeout(within_s):
            while not done():
                message, now = json.loads(await self.ws.recv()), time.monotonic()
                assert message["type"] != "error", message
                if message["type"] == "ack":
                    self.acks.append((message["seq"], now))
                elif message["type"] == "event":
                    self.events.append((message["event"], now))
                    self.last_seq = message["seq"]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [event["data"] for event, _ in self.events if event["type"] == type_]

    def at(self, type_: str) -> list[float]:
        return [when for event, when in self.events if event["type"] == type_]

    def types(self) -> list[str]:
        return [event["type"] for event, _ in self.events]

    async def ready(self) -> None:
        """The worker loaded its model (its progress says ``ready``); a session that ended first fails here."""

        def loaded() -> bool:
            return "ready" in [p.get("message") for p in self.of("job.progress")]

        await self.until(lambda: loaded() or any(t in TERMINAL for t in self.types()), LOAD_S)
        assert loaded(), [event for event, _ in self.events if event["type"] in TERMINAL]

    async def result(self, number: int) -> dict[str, Any]:
        """The session's ``number``-th result (from 1)."""
        await self.until(lambda: len(self.of("session.result")) >= number)
        return self.of("session.result")[number - 1]

    async def frames(self, *seeds: int) -> None:
        for seed in seeds:
            await self.ws.send(jpeg(seed))

    async def stop(self) -> dict[str, Any]:
        """Stop the session; its terminal event."""
        await self.ws.send(json.dumps({"type": "stop"}))
        await self.until(lambda: any(t in TERMINAL for t in self.types()))
        return next(event for event, _ in self.events if event["type"] in TERMINAL)


async def start(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    created = await api.post("/v1/sessions", json={"kind": "vlm", "params": params})
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


def span(result: dict[str, Any]) -> tuple[int, int]:
    return result["first_seq"], result["last_seq"]


async def sse(env: dict[str, str], session_id: str) -> list[dict[str, Any]]:
    """The session's SSE stream (``GET /v1/sessions/{id}/events``) from its start to its terminal event,
    followed by the Python client's ``sessions.stream`` (bounded): each event's envelope."""
    async with asyncio.timeout(WAIT_S), events_client(env) as client:
        stream = client.sessions.stream(session_id)
        return [event.envelope.model_dump(mode="json", exclude_unset=True) async for event in stream]


async def test_chunks_by_count_and_time_state_reset_results_on_socket_and_sse_alerts_to_a_webhook(
    vlm_stack: SessionStack,
) -> None:
    env, api = vlm_stack
    refused = await api.post("/v1/sessions", json={"kind": "vlm", "params": {"model": "org/not-allowed"}})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "params", "model"]
    params = {"chunk_frames": 3, "chunk_seconds": 2.0, "max_images_per_chunk": 2, "max_new_tokens": 8}
    alert = {"pattern": "[a-z]", "message": "letters seen"}
    with receiver(asyncio.get_running_loop()) as hook:
        registered = await api.post("/v1/webhooks", json={"url": hook.url, "events": ["session.alert"]})
        assert registered.status_code == 201, registered.text
        hook.secret = registered.json()["secret"]
        session = await start(api, **params, prompt="What moves?", alert=alert)
        sid = session["id"]
        async with open_socket(session["urls"]["stream"], env["GPURELAY_API_KEY"]) as ws:
            sock = Socket(ws)
            await sock.ready()
            await sock.frames(1, 2, 3)  # by count
            assert span(await sock.result(1)) == (1, 3)
            await sock.frames(4)  # alone: by time
            await sock.until(lambda: len(sock.acks) == 4)
            assert span(await sock.result(2)) == (4, 4)
            assert sock.at("session.result")[1] - sock.acks[3][1] >= 1.5  # chunk_seconds after its frame
            await sock.frames(5, 6, 7)
            assert span(await sock.result(3)) == (5, 7)
            await ws.send(json.dumps({"type": "reset"}))
            await sock.frames(8, 9, 10)
            assert span(await sock.result(4)) == (8, 10)
            done = await sock.stop()
        results = sock.of("session.result")
        matching = [r["chunk"] for r in results if re.search("[a-z]", r["text"])]
        assert matching, "the tiny model answered no letter: the alert proves nothing"
        delivered = await hook.until_count(sid, "session.alert", len(matching))
    assert [seq for seq, _ in sock.acks] == list(range(1, 11))
    assert [r["chunk"] for r in results] == [1, 2, 3, 4]
    assert [r["data"]["context_turns"] for r in results] == [0, 1, 2, 0]  # carried, then reset
    assert all(r["tokens"] == 8 and r["latency_ms"] >= 0 and r["text"] for r in results)
    assert [a["chunk"] for a in sock.of("session.alert")] == matching
    assert all(d.valid for d in delivered)
    assert [d.envelope["data"]["chunk"] for d in delivered] == matching
    assert {d.envelope["data"]["message"] for d in delivered} == {"letters seen"}
    assert done["type"] == "job.succeeded"
    assert (done["data"]["result"]["results"], done["data"]["result"]["frames_dropped"]) == (4, 0)
    streamed = await sse(env, sid)
    assert [span(e["data"]) for e in streamed if e["type"] == "session.result"] == [(1, 3), (4, 4), (5, 7), (8, 10)]
    assert [e["data"]["text"] for e in streamed if e["type"] == "session.result"] == [r["text"] for r in results]
    assert [e["data"]["chunk"] for e in streamed if e["type"] == "session.alert"] == matching
    await settled(env, sid)  # the stream can be ahead of the record's fold
    shown = (await api.get(f"/v1/sessions/{sid}")).json()
    assert (shown["state"], shown["frames_received"], shown["frames_processed"]) == ("succeeded", 10, 10)


async def test_a_client_that_reconnects_keeps_receiving_results(vlm_stack: SessionStack) -> None:
    env, api = vlm_stack
    session = await start(api, chunk_frames=2, chunk_seconds=30, max_new_tokens=4)
    key = env["GPURELAY_API_KEY"]
    async with open_socket(session["urls"]["stream"], key) as ws:
        first = Socket(ws)
        await first.ready()
        await first.frames(1, 2)
        assert span(await first.result(1)) == (1, 2)
        seen = first.last_seq
    for seed in (3, 4):  # while no socket is open
        posted = await api.post(session["urls"]["frames"], content=jpeg(seed), headers={"Content-Type": "image/jpeg"})
        assert posted.status_code == 202
    async with open_socket(f"{session['urls']['stream']}?after={seen}", key) as ws:
        again = Socket(ws)
        assert span(await again.result(1)) == (3, 4)  # answered while the client was away
        await again.frames(5, 6)
        assert span(await again.result(2)) == (5, 6)
        done = await again.stop()
    assert [seq for seq, _ in again.acks] == [5, 6]
    assert [r["chunk"] for r in again.of("session.result")] == [2, 3]
    assert done["type"] == "job.succeeded"


@pytest.mark.parametrize("vlm_stack", [{"delay_s": 3.0}], indirect=True)
async def test_a_slow_model_makes_frames_coalesce_while_acks_stay_immediate_and_memory_bounded(
    vlm_stack: SessionStack,
) -> None:
    env, api = vlm_stack
    session = await start(api, chunk_frames=2, chunk_seconds=30, max_new_tokens=4)
    async with open_socket(session["urls"]["stream"], env["GPURELAY_API_KEY"]) as ws:
        sock = Socket(ws)
        await sock.ready()
        await sock.frames(*range(1, 21))
        await sock.until(lambda: len(sock.acks) == 20)
        results_seen_then = len(sock.of("session.result"))
        await sock.until(lambda: any(r["last_seq"] == 20 for r in sock.of("session.result")))
        done = await sock.stop()
    assert [seq for seq, _ in sock.acks] == list(range(1, 21))
    assert results_seen_then == 0  # every frame was acked while the model was still on chunk 1
    results = sock.of("session.result")
    coalesced = [r for r in results if r["data"]["coalesced"]]
    assert coalesced, results
    assert all(r["data"]["covered"] <= 4 for r in results)  # the newest 2 × chunk_frames kept
    summary = done["data"]["result"]
    assert summary["frames_dropped"] > 0
    assert summary["frames_dropped"] + sum(r["data"]["covered"] for r in results) == 20
    assert summary["max_frames_held"] <= 2 + 4  # chunk_frames + the pending bound
    assert "test delay" in summary["model"]
    await settled(env, session["id"])  # the socket can be ahead of the record's fold
    shown = (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert shown["frames_dropped"] == summary["frames_dropped"]
