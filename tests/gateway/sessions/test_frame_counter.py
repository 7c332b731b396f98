"""A session's frame numbering (FRAMES itself, KV ``sessions`` its floor): one request per frame, no counter
write on the way, and no seq lost or repeated when two gateway replicas take the same session's frames
in turn or at once (each one's last known frame goes stale), when a frame cannot be stored, or when
FRAMES no longer holds the session's frames."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.api.sessions import SessionEntry
from contracts.session_feed import H_SEQ
from contracts.streams import FRAMES, KV_SESSIONS
from contracts.subjects import Namespace
from services.gateway.app import create_app
from services.gateway.sessions import numbering
from services.gateway.settings import GatewaySettings
from tests.support.gateway import Gateway, Tenant, gateway_settings
from tests.support.http import bound_socket, serve
from tests.support.sessions import frames_stored, jpeg

JPEG = {"Content-Type": "image/jpeg"}


def replica_settings(gateway: Gateway) -> tuple[GatewaySettings, socket.socket]:
    """Settings of a second gateway process on the same NATS, namespace and data, and its bound socket."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    s = gateway.settings
    return gateway_settings(s.data_dir, url, nats_url=s.nats_url, namespace=s.namespace), sock


async def post_frames(http: httpx.AsyncClient, session_id: str, count: int) -> list[int]:
    seqs = []
    for k in range(count):
        sent = await http.post(f"/v1/sessions/{session_id}/frames", content=jpeg(k), headers=JPEG)
        assert sent.status_code == 202, sent.text
        seqs.append(sent.json()["seq"])
    return seqs


async def test_a_sessions_frames_cost_one_request_each_and_no_counter_write(
    acme: Tenant, nc: NatsClient, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(numbering, "CHECKPOINT_S", 3600.0)  # the floor's write in the background: not now
    created = await acme.http.post("/v1/sessions", json={"kind": "vlm"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    kv_stream, bucket = f"KV_{namespace.bucket(KV_SESSIONS)}", namespace.bucket(KV_SESSIONS)
    reads: list[str] = []
    writes: list[str] = []
    frames_reads: list[str] = []

    async def on(into: list[str]) -> object:
        async def cb(msg: Msg) -> None:
            into.append(msg.subject)

        return cb

    subs = [
        await nc.subscribe(f"$JS.API.DIRECT.GET.{kv_stream}.>", cb=await on(reads)),
        await nc.subscribe(f"$JS.API.DIRECT.GET.{kv_stream}", cb=await on(reads)),
        await nc.subscribe(f"$JS.API.STREAM.MSG.GET.{kv_stream}", cb=await on(reads)),
        await nc.subscribe(f"$KV.{bucket}.>", cb=await on(writes)),
        await nc.subscribe(f"$JS.API.STREAM.MSG.GET.{namespace.stream(FRAMES)}", cb=await on(frames_reads)),
        await nc.subscribe(f"$JS.API.DIRECT.GET.{namespace.stream(FRAMES)}.>", cb=await on(frames_reads)),
    ]
    assert await post_frames(acme.http, sid, 10) == list(range(1, 11))
    await nc.flush()
    for sub in subs:
        await sub.unsubscribe()
    assert len(reads) <= 1, reads  # the first frame reads the session's entry (none yet), then none
    assert len(writes) == 1, writes  # the entry made before the first frame; no counter write per frame
    assert len(frames_reads) <= 1, frames_reads  # the subject's last frame, once (or at the session's start)
    assert (await acme.http.get(f"/v1/sessions/{sid}")).json()["frames_received"] == 10


async def test_two_replicas_taking_turns_number_every_frame_once(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    created = await acme.http.post("/v1/sessions", json={"kind": "vlm"})
    sid = created.json()["id"]
    settings, sock = replica_settings(gateway)
    with serve(create_app(settings), sock):
        async with httpx.AsyncClient(base_url=settings.url, headers=acme.http.headers, timeout=30) as second:
            seqs = await post_frames(acme.http, sid, 3)
            seqs += await post_frames(second, sid, 2)
            seqs += await post_frames(acme.http, sid, 2)  # its kept revision is stale: read again, not reused
            seqs += await post_frames(second, sid, 1)
    assert seqs == list(range(1, 9))
    stored = await frames_stored(js, namespace, "acme", sid, 8)
    assert [int(m.headers[H_SEQ]) for m in stored] == list(range(1, 9))


async def test_two_replicas_taking_frames_at_once_store_them_in_the_order_of_their_numbers(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    settings, sock = replica_settings(gateway)
    with serve(create_app(settings), sock):
        async with httpx.AsyncClient(base_url=settings.url, headers=acme.http.headers, timeout=30) as second:
            both = await asyncio.gather(post_frames(acme.http, sid, 6), post_frames(second, sid, 6))
    assert sorted(both[0] + both[1]) == list(range(1, 13))
    stored = await frames_stored(js, namespace, "acme", sid, 12)
    assert [int(m.headers[H_SEQ]) for m in stored] == list(range(1, 13))  # stream order is seq order


async def test_a_frame_that_could_not_be_stored_takes_no_number(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    state = gateway.app.state.gateway
    assert await post_frames(acme.http, sid, 1) == [1]
    publish, failed = state.js.publish, []

    async def once_unanswered(subject: str, *args: object, **kwargs: object) -> object:
        if subject.endswith(".frames") and not failed:
            failed.append(subject)
            raise TimeoutError
        return await publish(subject, *args, **kwargs)

    monkeypatch.setattr(state.js, "publish", once_unanswered)
    lost = await acme.http.post(f"/v1/sessions/{sid}/frames", content=jpeg(1), headers=JPEG)
    assert lost.status_code == 503, lost.text
    assert await post_frames(acme.http, sid, 2) == [2, 3]  # no gap where the unstored frame was
    stored = await frames_stored(js, namespace, "acme", sid, 3)
    assert [int(m.headers[H_SEQ]) for m in stored] == [1, 2, 3]


async def test_numbering_goes_on_from_the_floor_once_frames_holds_none_of_the_sessions_frames(
    acme: Tenant, js: JetStreamContext, namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(numbering, "CHECKPOINT_S", 0.05)
    sid = (await acme.http.post("/v1/sessions", json={"kind": "vlm"})).json()["id"]
    assert await post_frames(acme.http, sid, 3) == [1, 2, 3]
    kv = await js.key_value(namespace.bucket(KV_SESSIONS))
    async with asyncio.timeout(20):
        while SessionEntry.model_validate_json((await kv.get(f"acme.{sid}")).value or b"").frames < 3:  # noqa: ASYNC110 - server state
            await asyncio.sleep(0.05)  # the floor follows in the background
    await js.purge_stream(namespace.stream(FRAMES), subject=namespace.subject(f"sessions.acme.{sid}.frames"))
    assert await post_frames(acme.http, sid, 2) == [4, 5]  # FRAMES lost them (age, bytes): the floor says 3
    assert (await acme.http.get(f"/v1/sessions/{sid}")).json()["frames_received"] == 5
