"""The session socket over a real WebSocket: frames acked at once, control, the session's events, refusals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable

import nats.errors
import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from contracts.events.jobs import JobHeartbeatPayload, JobProgressPayload, JobSucceededPayload
from contracts.events.registry import EventType
from contracts.session_feed import H_TS
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.gateway import Gateway, Tenant
from tests.support.sessions import (
    frames_count,
    frames_stored,
    jpeg,
    next_json,
    open_socket,
    publish_event,
    until_closed,
)
from tests.support.stopping import sigstop

MAX_FRAME = 64 * 1024


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    return {"session_frame_max_bytes": MAX_FRAME, "robot_ws_auth_timeout_s": 1.0}


async def start(tenant: Tenant) -> dict[str, object]:
    created = await tenant.http.post("/v1/sessions", json={"kind": "vlm"})
    assert created.status_code == 201, created.text
    out: dict[str, object] = created.json()
    return out


def stream_url(session: dict[str, object]) -> str:
    urls = session["urls"]
    assert isinstance(urls, dict)
    return str(urls["stream"])


async def test_frames_are_acked_in_order_and_stored(acme: Tenant, js: JetStreamContext, namespace: Namespace) -> None:
    session = await start(acme)
    async with open_socket(stream_url(session)) as ws:
        await ws.send(json.dumps({"auth": acme.key}))
        await ws.send(jpeg(1))
        assert (await next_json(ws))["seq"] == 1
        await ws.send(json.dumps({"type": "frame", "ts": 1700000001.5}))
        await ws.send(jpeg(2))
        ack = await next_json(ws)
        assert (ack["type"], ack["seq"], ack["ts"]) == ("ack", 2, 1700000001.5)
    first, second = await frames_stored(js, namespace, "acme", str(session["id"]), 2)
    assert (first.data, second.data) == (jpeg(1), jpeg(2))
    assert second.headers[H_TS] == "1700000001.5"


async def test_a_frame_sent_again_with_its_key_on_a_new_socket_is_acked_with_the_seq_it_was_stored_as(
    acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    session = await start(acme)

    async def send(ws: ClientConnection, frame: bytes, key: str) -> dict[str, object]:
        await ws.send(json.dumps({"type": "frame", "key": key}))
        await ws.send(frame)
        return await next_json(ws)

    async with open_socket(stream_url(session), acme.key) as ws:
        assert (await send(ws, jpeg(1), "f-1"))["seq"] == 1
        assert (await send(ws, jpeg(2), "f-2"))["seq"] == 2
    async with open_socket(stream_url(session), acme.key) as ws:  # as after a dropped socket
        assert (await send(ws, jpeg(2), "f-2"))["seq"] == 2
        assert (await send(ws, jpeg(3), "f-3"))["seq"] == 3
        reused = await send(ws, jpeg(4), "f-3")
        assert (reused["type"], reused["code"]) == ("error", "invalid")
        assert "Idempotency-Key" in str(reused["message"])
        for bad in ("", "k" * 256, "tab\t"):
            await ws.send(json.dumps({"type": "frame", "key": bad}))
            assert (await next_json(ws))["code"] == "invalid"
        await ws.send(jpeg(4))
        assert (await next_json(ws))["seq"] == 4
    stored = await frames_stored(js, namespace, "acme", str(session["id"]), 4)
    assert [m.data for m in stored] == [jpeg(1), jpeg(2), jpeg(3), jpeg(4)]
    assert await frames_count(js, namespace, "acme", str(session["id"])) == 4  # each once


async def test_bad_messages_get_an_error_and_the_socket_stays_open(acme: Tenant) -> None:
    session = await start(acme)
    async with open_socket(stream_url(session), acme.key) as ws:
        for bad in ("not json", json.dumps({"type": "dance"}), json.dumps({"type": "frame", "pose": [1, 2]})):
            await ws.send(bad)
            assert (await next_json(ws))["code"] == "invalid"
        await ws.send(b"GIF89a not an image")
        error = await next_json(ws)
        assert (error["type"], error["code"]) == ("error", "invalid")
        await ws.send(jpeg(3))
        assert (await next_json(ws))["seq"] == 1
        await ws.send(json.dumps({"type": "stop"}))
        assert await next_json(ws, skip=("event",)) == {"type": "control", "action": "stop"}
        await ws.send(jpeg(4))
        assert (await next_json(ws, skip=("event",)))["code"] == "session_ended"


async def test_a_ping_is_answered_pong_between_a_frames_description_and_its_bytes(acme: Tenant) -> None:
    """A client's liveness check: a pong for each ping, and a ping after a frame's description leaves
    the description to the frame that follows."""
    session = await start(acme)
    async with open_socket(stream_url(session), acme.key) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_json(ws, skip=("event",)) == {"type": "pong"}
        await ws.send(json.dumps({"type": "frame", "ts": 1700000002.5}))
        await ws.send(json.dumps({"type": "ping"}))
        await ws.send(jpeg(1))
        assert await next_json(ws, skip=("event",)) == {"type": "pong"}
        ack = await next_json(ws, skip=("event",))
        assert (ack["type"], ack["seq"], ack["ts"]) == ("ack", 1, 1700000002.5)


async def test_an_oversize_message_closes_1009(acme: Tenant) -> None:
    session = await start(acme)
    async with open_socket(stream_url(session), acme.key, max_size=None) as ws:
        await ws.send(b"\xff\xd8\xff" + b"0" * MAX_FRAME)  # just under the socket limit: the route refuses it
        assert (await next_json(ws))["code"] == "frame_too_large"
        await ws.send(b"\xff\xd8\xff" + b"0" * (MAX_FRAME + 2048))
        _, code = await until_closed(ws)
    assert code == 1009


async def test_the_sessions_events_come_down_the_socket_until_the_end(
    acme: Tenant, js: JetStreamContext, subjects: Subjects
) -> None:
    session = await start(acme)
    sid = str(session["id"])
    async with open_socket(stream_url(session), acme.key) as ws:
        await ws.send(jpeg(1))
        assert (await next_json(ws))["type"] == "ack"  # the socket is set up: its events flow from now on
        await publish_event(js, subjects, "acme", sid, EventType.JOB_HEARTBEAT, JobHeartbeatPayload(worker="w"))
        progress = JobProgressPayload(fraction=0.1, metrics={"frames_processed": 1})
        seq = await publish_event(js, subjects, "acme", sid, EventType.JOB_PROGRESS, progress)
        await publish_event(js, subjects, "acme", sid, EventType.JOB_SUCCEEDED, JobSucceededPayload())
        messages, code = await until_closed(ws)
    assert [m["event"]["type"] for m in messages] == ["job.progress", "job.succeeded"]  # no heartbeat
    assert messages[0]["seq"] == seq
    assert messages[0]["event"]["data"]["metrics"] == {"frames_processed": 1}
    assert code == 1000


async def test_a_stream_token_opens_the_socket_too(acme: Tenant) -> None:
    session = await start(acme)
    token = str(session["urls"]["events"]).split("token=")[1]  # type: ignore[index]
    async with open_socket(stream_url(session)) as ws:
        await ws.send(json.dumps({"auth": token}))
        await ws.send(jpeg(1))
        assert (await next_json(ws))["seq"] == 1


@pytest.mark.parametrize(
    ("who", "code"), [("globex", 4404), ("garbage", 4401), ("silent", 1008), ("header-garbage", 4401)]
)
async def test_refusals_close_with_their_code(
    acme: Tenant, globex: Tenant, gateway: Gateway, who: str, code: int
) -> None:
    session = await start(acme)
    key = {"globex": globex.key, "header-garbage": "gr_nope"}.get(who)
    async with open_socket(stream_url(session), key) as ws:
        if who == "garbage":
            await ws.send(json.dumps({"auth": "gr_nope"}))
        try:
            _, closed = await until_closed(ws)
        except ConnectionClosed:
            closed = ws.close_code
    assert closed == code


async def test_a_stop_is_in_force_before_its_publishes_end(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame that races a stop (the stop's control already on the stream, its event not yet) is
    refused: the gateway refuses input from the moment it takes the stop, not once it published it."""
    state = gateway.app.state.gateway
    held, release = asyncio.Event(), asyncio.Event()
    publish_once = state.publish_once

    async def held_publish(subject: str, *args: object, **kwargs: object) -> object:
        if subject.endswith(".stop_requested"):
            held.set()
            await release.wait()
        return await publish_once(subject, *args, **kwargs)

    session = await start(acme)
    sid = str(session["id"])
    monkeypatch.setattr(state, "publish_once", held_publish)
    async with open_socket(stream_url(session), acme.key) as ws:
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(held.wait(), 30)
        racing = await acme.http.post(
            f"/v1/sessions/{sid}/frames", content=jpeg(2), headers={"Content-Type": "image/jpeg"}
        )
        release.set()
        answers = [await next_json(ws) for _ in range(2)]  # the control's answer and the stop's event
    assert {"type": "control", "action": "stop"} in answers
    assert racing.status_code == 409, racing.text
    assert await frames_count(js, namespace, "acme", sid) == 1  # the stop's control, no frame


async def test_a_control_message_that_meets_nats_away_gets_unavailable_and_the_socket_stays_open(
    acme: Tenant, nats_server: EmbeddedNats
) -> None:
    """A stop while nats-server is paused (its record read times out): an ``unavailable`` error on the
    socket, which stays open and takes frames once NATS is back. Before, the timeout went up to the app's
    HTTP error handlers, which failed on a WebSocket, and the connection dropped without a close frame."""
    session = await start(acme)
    async with open_socket(stream_url(session), acme.key) as ws:
        await ws.send(jpeg(1))
        assert (await next_json(ws, skip=("event",)))["seq"] == 1
        assert nats_server.pid is not None
        sigstop(nats_server.pid)
        try:
            await ws.send(json.dumps({"type": "stop"}))
            error = await next_json(ws, timeout_s=30, skip=("event",))
        finally:
            os.kill(nats_server.pid, signal.SIGCONT)
        assert (error.get("type"), error.get("code")) == ("error", "unavailable"), error
        await ws.send(jpeg(2))
        assert (await next_json(ws, timeout_s=30, skip=("event",)))["seq"] == 2


async def once_back(publish: Callable[[], Awaitable[int]]) -> int:
    """``publish`` once this client has reconnected to the restarted server (sent again until it is
    answered: the event's id makes a second store of it a no-op)."""
    async with asyncio.timeout(60):
        while True:
            try:
                return await publish()
            except (nats.errors.Error, TimeoutError):
                await asyncio.sleep(0.5)


async def test_a_socket_whose_event_consumer_is_made_again_sends_nothing_from_before_it_opened(
    acme: Tenant, nats_server: EmbeddedNats, js: JetStreamContext, subjects: Subjects
) -> None:
    """The socket's ordered consumer is made again at the reconnect (here: nats-server restarted, the memory
    consumer gone; nats-py's own check would take two missed heartbeats, 10 to 20 s), from the stream's first
    message when none had come yet: the socket passes on only events stored after it opened (the session's
    ``job.created`` came before; it was sent then), and soon after it was published."""
    session = await start(acme)
    sid = str(session["id"])
    async with open_socket(stream_url(session), acme.key) as ws:
        await ws.send(jpeg(1))
        assert (await next_json(ws, skip=("event",)))["type"] == "ack"
        nats_server.kill()
        nats_server.start()
        progress = JobProgressPayload(fraction=0.5, metrics={})
        seq = await once_back(lambda: publish_event(js, subjects, "acme", sid, EventType.JOB_PROGRESS, progress))
        published = time.monotonic()
        event = await next_json(ws, timeout_s=60)
        assert time.monotonic() - published < 8.0  # nats-py alone: 20 s after the socket opened (~14 s after this)
    assert (event["type"], event["seq"], event["event"]["type"]) == ("event", seq, "job.progress")
