"""A session's frame counter (KV ``sessions``): one compare-and-set per frame, and no seq lost or repeated
when two gateway replicas take the same session's frames in turn (each one's kept revision goes stale)."""

from __future__ import annotations

import socket

import httpx
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.session_feed import H_SEQ
from contracts.streams import KV_SESSIONS
from contracts.subjects import Namespace
from services.gateway.app import create_app
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


async def test_a_sessions_frames_cost_one_counter_write_each_and_one_read_in_all(
    acme: Tenant, nc: NatsClient, namespace: Namespace
) -> None:
    created = await acme.http.post("/v1/sessions", json={"kind": "vlm"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    stream = f"KV_{namespace.bucket(KV_SESSIONS)}"
    reads: list[str] = []

    async def on_read(msg: Msg) -> None:
        reads.append(msg.subject)

    subs = [
        await nc.subscribe(f"$JS.API.DIRECT.GET.{stream}.>", cb=on_read),
        await nc.subscribe(f"$JS.API.DIRECT.GET.{stream}", cb=on_read),
        await nc.subscribe(f"$JS.API.STREAM.MSG.GET.{stream}", cb=on_read),
    ]
    assert await post_frames(acme.http, sid, 10) == list(range(1, 11))
    await nc.flush()
    for sub in subs:
        await sub.unsubscribe()
    assert len(reads) <= 1, reads  # the first frame may read the entry the session's start made; then none


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
