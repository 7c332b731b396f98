"""Robots' joint angles over real HTTP and a real WebSocket, into a real TELEMETRY stream.

Every sample published is read back with an ordered consumer and compared, in order, with what
was sent; invalid samples are refused with the field named and publish nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contracts.api.robots import JointsWsAck
from contracts.events.robots import JointSample
from contracts.ids import tenant_key
from contracts.streams import KV_ROBOTS, TELEMETRY
from contracts.subjects import Namespace, Subjects
from services.common.auth.apikeys import ApiKeyStore, Principal
from services.common.auth.key_cache import KeyCache
from tests.support.gateway import Gateway, Tenant
from tests.support.robots import read_samples

COUNT = 10_000
BATCH = 1000
ROBOT = "so101-a"


@pytest.fixture
def gateway_overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    """Quick WebSocket auth time-out, acks every 500 messages or 200 ms; a test may add more."""
    base = {"robot_ws_auth_timeout_s": 0.5, "robot_ws_ack_every": 500, "robot_ws_ack_ms": 200.0}
    return {**base, **getattr(request, "param", {})}


def angles(i: int) -> list[float]:
    """Six distinct angles for sample ``i``, all within ±2π."""
    return [round(((i * 7 + j) % 12_000) / 2000 - 3.0, 4) for j in range(6)]


async def stream_count(js: JetStreamContext, ns: Namespace) -> int:
    return (await js.stream_info(ns.stream(TELEMETRY))).state.messages


async def wait_for_count(js: JetStreamContext, ns: Namespace, count: int, timeout_s: float = 15.0) -> None:
    """Poll the stream's state until it holds ``count`` messages."""
    async with asyncio.timeout(timeout_s):
        while (have := await stream_count(js, ns)) < count:  # noqa: ASYNC110 - server state, no event
            await asyncio.sleep(0.05)
    assert have == count


def ws_url(gateway: Gateway, robot_id: str = ROBOT) -> str:
    return gateway.url.replace("http://", "ws://") + f"/v1/robots/{robot_id}/joints/ws"


def ws_connect(gateway: Gateway, key: str | None, robot_id: str = ROBOT, **options: Any) -> connect:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return connect(ws_url(gateway, robot_id), additional_headers=headers, proxy=None, compression=None, **options)


async def receive_all(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and the close code."""
    messages = []
    try:
        async with asyncio.timeout(20):
            async for raw in ws:
                messages.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return messages, ws.close_code


async def test_10k_samples_in_http_batches_reach_telemetry_in_order(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    url = f"/v1/robots/{ROBOT}/joints"
    for start in range(0, COUNT, BATCH):
        batch = [{"joint_angles": angles(i), "seq": i} for i in range(start, start + BATCH)]
        response = await acme.http.post(url, json={"samples": batch})
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": BATCH}
    await wait_for_count(js, namespace, COUNT)
    samples = await read_samples(js, namespace, subjects.robot_joints("acme", ROBOT), COUNT)
    assert [s.seq for s in samples] == list(range(COUNT))
    assert [s.joint_angles for s in samples] == [angles(i) for i in range(COUNT)]
    assert {s.robot_id for s in samples} == {ROBOT}
    latest = await acme.http.get(f"{url}/latest")
    assert latest.status_code == 200
    assert JointSample.model_validate_json(latest.content) == samples[-1]


async def test_10k_samples_over_the_websocket_reach_telemetry_in_order(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    async with ws_connect(gateway, acme.key) as ws:
        reader = asyncio.create_task(receive_all(ws))
        for i in range(COUNT):
            await ws.send(json.dumps({"joint_angles": angles(i), "seq": i}))
        await ws.send('{"type": "close"}')
        messages, code = await reader
    assert code == 1000
    acks = [m for m in messages if m["type"] == "ack"]
    assert len(acks) >= COUNT // 500
    assert acks[-1] == {"type": "ack", "accepted": COUNT, "rejected": 0}
    assert all(JointsWsAck.model_validate(a) for a in acks)
    assert [a["accepted"] for a in acks] == sorted(a["accepted"] for a in acks)
    await wait_for_count(js, namespace, COUNT)
    samples = await read_samples(js, namespace, subjects.robot_joints("acme", ROBOT), COUNT)
    assert [s.seq for s in samples] == list(range(COUNT))
    assert [s.joint_angles for s in samples] == [angles(i) for i in range(COUNT)]
    latest = await acme.http.get(f"/v1/robots/{ROBOT}/joints/latest")
    assert latest.json()["seq"] == COUNT - 1


async def test_single_sample_keeps_ts_and_seq_and_becomes_latest(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, subjects: Subjects
) -> None:
    url = f"/v1/robots/{ROBOT}/joints"
    assert (await acme.http.get(f"{url}/latest")).status_code == 404
    body = {"joint_angles": [0, 0.5, -1.25, 3.0, -6.28, 6.28], "ts": "2026-11-22T10:00:00.5+01:00", "seq": 7}
    response = await acme.http.post(url, json=body)
    assert response.status_code == 202
    assert response.json() == {"accepted": 1}
    latest = (await acme.http.get(f"{url}/latest")).json()  # read-your-writes, before any flush
    assert latest == {
        "robot_id": ROBOT,
        "joint_angles": [0.0, 0.5, -1.25, 3.0, -6.28, 6.28],
        "ts": "2026-11-22T09:00:00.500000Z",
        "seq": 7,
    }
    await wait_for_count(js, namespace, 1)
    [sample] = await read_samples(js, namespace, subjects.robot_joints("acme", ROBOT), 1)
    assert sample.model_dump(mode="json") == {**latest, "ts": "2026-11-22T09:00:00.500000Z"}
    # No ts: the gateway's receipt time. The flusher writes the latest to KV robots.
    await acme.http.post(url, json={"joint_angles": [0.1] * 6})
    kv = await js.key_value(namespace.bucket(KV_ROBOTS))
    async with asyncio.timeout(5):
        while True:
            try:
                entry = await kv.get(tenant_key("acme", ROBOT))
            except KeyNotFoundError:
                entry = None
            if entry is not None and entry.value and b'"seq"' not in entry.value:
                break
            await asyncio.sleep(0.02)
    assert JointSample.model_validate_json(entry.value or b"").joint_angles == [0.1] * 6


async def test_tenants_and_keys(gateway: Gateway, acme: Tenant, globex: Tenant, anonymous: Any) -> None:
    url = f"/v1/robots/{ROBOT}/joints"
    assert (await acme.http.post(url, json={"joint_angles": [0.0] * 6})).status_code == 202
    assert (await acme.http.get(f"{url}/latest")).status_code == 200
    other = await globex.http.get(f"{url}/latest")
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert (await anonymous.post(url, json={"joint_angles": [0.0] * 6})).status_code == 401
    assert (await anonymous.get(f"{url}/latest")).status_code == 401


NAN_6 = b'{"joint_angles": [NaN, 0, 0, 0, 0, 0]}'
BAD_BODIES: list[tuple[str, bytes | dict[str, Any], list[str | int]]] = [
    ("nan", NAN_6, ["body", "joint_angles", 0]),
    ("inf", b'{"joint_angles": [0, Infinity, 0, 0, 0, 0]}', ["body", "joint_angles", 1]),
    ("-inf", b'{"joint_angles": [0, 0, -Infinity, 0, 0, 0]}', ["body", "joint_angles", 2]),
    ("huge", b'{"joint_angles": [0, 0, 0, 1e400, 0, 0]}', ["body", "joint_angles", 3]),
    ("7 rad", {"joint_angles": [0, 0, 0, 0, 7.0, 0]}, ["body", "joint_angles", 4]),
    ("-7 rad", {"joint_angles": [0, 0, 0, 0, 0, -7.0]}, ["body", "joint_angles", 5]),
    ("5 joints", {"joint_angles": [0.0] * 5}, ["body", "joint_angles"]),
    ("7 joints", {"joint_angles": [0.0] * 7}, ["body", "joint_angles"]),
    ("string", {"joint_angles": ["0", 0, 0, 0, 0, 0]}, ["body", "joint_angles", 0]),
    ("bool", {"joint_angles": [0, True, 0, 0, 0, 0]}, ["body", "joint_angles", 1]),
    ("naive ts", {"joint_angles": [0.0] * 6, "ts": "2026-11-22T10:00:00"}, ["body", "ts"]),
    ("neither form", {"ts": "2026-11-22T10:00:00Z"}, ["body"]),
    ("both forms", {"joint_angles": [0.0] * 6, "samples": [{"joint_angles": [0.0] * 6}]}, ["body"]),
    ("empty batch", {"samples": []}, ["body", "samples"]),
    ("batch too big", {"samples": [{"joint_angles": [0.0] * 6}] * 1001}, ["body", "samples"]),
    (
        "nan in a batch",
        b'{"samples": ['
        + b"".join(b'{"joint_angles": [0, 0, 0, 0, 0, 0]},' for _ in range(3))
        + b'{"joint_angles": [0, 0, NaN, 0, 0, 0]}]}',
        ["body", "samples", 3, "joint_angles", 2],
    ),
    (
        "7 joints in a batch",
        {"samples": [{"joint_angles": [0.0] * 6}, {"joint_angles": [0.0] * 7}]},
        ["body", "samples", 1, "joint_angles"],
    ),
]


@pytest.mark.parametrize(("body", "loc"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES])
async def test_invalid_samples_name_the_field_and_publish_nothing(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, body: Any, loc: list[Any]
) -> None:
    url = f"/v1/robots/{ROBOT}/joints"
    if isinstance(body, bytes):
        response = await acme.http.post(url, content=body, headers={"Content-Type": "application/json"})
    else:
        response = await acme.http.post(url, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert loc in [e["loc"] for e in response.json()["errors"]], response.json()
    assert await stream_count(js, namespace) == 0
    assert (await acme.http.get(f"{url}/latest")).status_code == 404


@pytest.mark.parametrize("robot_id", ["bad.id", "a*", "x" * 65])
async def test_bad_robot_ids_are_refused(gateway: Gateway, acme: Tenant, robot_id: str) -> None:
    response = await acme.http.post(f"/v1/robots/{robot_id}/joints", json={"joint_angles": [0.0] * 6})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "robot_id"]
    assert (await acme.http.get(f"/v1/robots/{robot_id}/joints/latest")).status_code == 422


async def test_websocket_rejects_bad_samples_and_stays_open(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    async with ws_connect(gateway, None) as ws:
        await ws.send(json.dumps({"auth": acme.key}))  # a browser's way in: the key as first message
        for text in [
            '{"joint_angles": [0, 0, NaN, 0, 0, 0]}',
            '{"joint_angles": [0, 0, 0, 0, 0]}',
            '{"joint_angles": [0, 0, 0, 0, 0, 9.5]}',
            "not json",
            '{"joint_angles": [0.25, 0, 0, 0, 0, 0], "seq": 1}',
            '{"type": "close"}',
        ]:
            await ws.send(text)
        messages, code = await receive_all(ws)
    assert code == 1000
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["index"] for e in errors] == [0, 1, 2, 3]
    locs = [["joint_angles", 2], ["joint_angles"], ["joint_angles", 5]]
    assert [e["errors"][0]["loc"] for e in errors[:3]] == locs
    assert messages[-1] == {"type": "ack", "accepted": 1, "rejected": 4}
    await wait_for_count(js, namespace, 1)


async def test_websocket_acks_on_time_when_idle(gateway: Gateway, acme: Tenant) -> None:
    async with ws_connect(gateway, acme.key) as ws:
        await ws.send(json.dumps({"joint_angles": [0.0] * 6}))
        async with asyncio.timeout(5):
            ack = json.loads(await ws.recv())
    assert ack == {"type": "ack", "accepted": 1, "rejected": 0}


@pytest.mark.parametrize("how", ["bad header", "bad first message"])
async def test_websocket_unauthorized_closes_4401(gateway: Gateway, how: str) -> None:
    key = "gr_0123456789abcdef_" + "x" * 43 if how == "bad header" else None
    async with ws_connect(gateway, key) as ws:
        if how == "bad first message":
            await ws.send('{"auth": "nope"}')
        _, code = await receive_all(ws)
    assert code == 4401


async def test_websocket_without_auth_in_time_closes_1008(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    async with ws_connect(gateway, None) as ws:
        opened = loop.time()
        _, code = await receive_all(ws)
        waited = loop.time() - opened
    assert code == 1008
    assert "auth" in (ws.close_reason or "")
    assert gateway.settings.robot_ws_auth_timeout_s * 0.9 <= waited < 5


@pytest.mark.parametrize("gateway_overrides", [{"robot_ws_auth_timeout_s": 30.0}], indirect=True)
@pytest.mark.parametrize("authenticated", [False, True], ids=["before auth", "after auth"])
async def test_websocket_message_over_the_size_limit_closes_1009(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace, authenticated: bool
) -> None:
    """The server refuses the frame from its header: no message over the limit is ever held in memory.
    The auth time-out is long here: under load, the module's 0.5 s ran out before a 4 MiB frame's header
    was read, and the socket closed 1008 (no credential) instead."""
    limit = gateway.settings.ws_max_message_bytes
    async with ws_connect(gateway, acme.key if authenticated else None, max_size=None) as ws:
        if authenticated:  # acked before the oversized frame: a close cancels a sample still being stored
            await ws.send(json.dumps({"joint_angles": [0.0] * 6}))
            assert json.loads(await ws.recv())["type"] == "ack"
        with contextlib.suppress(ConnectionClosed):  # the server may close while the frame is still sent
            await ws.send(json.dumps({"auth": acme.key, "pad": "x" * (4 * 1024 * 1024)}))
        messages, code = await receive_all(ws)
    assert code == 1009
    assert all(m["type"] == "ack" for m in messages)
    assert limit <= 64 * 1024
    if authenticated:  # the sample before the oversized message was published
        await wait_for_count(js, namespace, 1)
    else:
        assert await stream_count(js, namespace) == 0


async def test_websocket_message_just_over_the_limit_closes_1009_even_behind_another_server(
    gateway: Gateway, acme: Tenant
) -> None:
    """The route checks the size itself too, for a server configured with a larger limit."""
    async with ws_connect(gateway, acme.key) as ws:
        await ws.send("x" * (gateway.settings.ws_max_message_bytes + 1))
        _, code = await receive_all(ws)
    assert code == 1009


async def test_websocket_policy_closes_1008(gateway: Gateway, acme: Tenant) -> None:
    async with ws_connect(gateway, acme.key, robot_id="bad.id") as ws:
        _, code = await receive_all(ws)
    assert code == 1008
    async with ws_connect(gateway, acme.key) as ws:
        await ws.send(b"\x00binary")
        _, code = await receive_all(ws)
    assert code == 1008


async def test_a_revoked_key_stops_working_at_once_despite_the_cache(
    gateway: Gateway, acme: Tenant, api_keys: ApiKeyStore
) -> None:
    url = f"/v1/robots/{ROBOT}/joints"
    for _ in range(3):  # verified once, then served from the key cache
        assert (await acme.http.post(url, json={"joint_angles": [0.0] * 6})).status_code == 202
    assert await api_keys.revoke(acme.key_id)
    for _ in range(200):  # the cache's KV watcher drops the key within milliseconds
        response = await acme.http.post(url, json={"joint_angles": [0.0] * 6})
        if response.status_code != 202:
            break
        await asyncio.sleep(0.01)
    assert response.status_code == 401
    async with ws_connect(gateway, acme.key) as ws:
        _, code = await receive_all(ws)
    assert code == 4401


async def test_key_cache_reads_kv_once_then_forgets_a_revoked_key(
    gateway: Gateway, acme: Tenant, api_keys: ApiKeyStore
) -> None:
    reads = 0

    class CountingStore(ApiKeyStore):
        async def verify(self, plaintext: str) -> Principal | None:
            nonlocal reads
            reads += 1
            return await super().verify(plaintext)

    cache = KeyCache(CountingStore(api_keys.kv), ttl_s=60)
    await cache.start()
    try:
        for _ in range(3):
            principal = await cache.verify(acme.key)
            assert principal is not None
            assert principal.tenant == "acme"
        assert reads == 1
        assert await cache.verify("gr_0123456789abcdef_" + "x" * 43) is None
        await api_keys.revoke(acme.key_id)
        for _ in range(200):
            if await cache.verify(acme.key) is None:
                break
            await asyncio.sleep(0.01)
        assert await cache.verify(acme.key) is None
    finally:
        await cache.stop()


@pytest.mark.parametrize("gateway_overrides", [{"robot_latest_flush_ms": 0, "robot_confirm_every": 5}], indirect=True)
async def test_write_through_latest_and_frequent_confirmations(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    """With no coalescing the POST writes KV before answering; every 5th sample awaits an ack."""
    kv = await js.key_value(namespace.bucket(KV_ROBOTS))
    for i in range(12):
        body = {"joint_angles": angles(i), "seq": i}
        assert (await acme.http.post(f"/v1/robots/{ROBOT}/joints", json=body)).status_code == 202
        entry = await kv.get(tenant_key("acme", ROBOT))
        assert JointSample.model_validate_json(entry.value or b"").seq == i
    await wait_for_count(js, namespace, 12)


async def test_websocket_accepts_a_message_up_to_the_limit(gateway: Gateway, acme: Tenant) -> None:
    """A message of exactly the limit is read (and, not being a sample, answered with an error)."""
    async with ws_connect(gateway, acme.key) as ws:
        await ws.send("x" * gateway.settings.ws_max_message_bytes)
        error = json.loads(await ws.recv())
        await ws.send(json.dumps({"joint_angles": [0.0] * 6}))
        await ws.send('{"type": "close"}')
        messages, code = await receive_all(ws)
    assert error["type"] == "error"
    assert error["index"] == 0
    assert messages[-1] == {"type": "ack", "accepted": 1, "rejected": 1}
    assert code == 1000
