"""Robot resources are bounded: distinct robots per tenant, KV ``robots`` entries (TTL), TELEMETRY
bytes, and the gateway's in-memory map of unwritten latest samples. Real NATS, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from contracts.events.robots import JointSample
from contracts.ids import tenant_key
from contracts.streams import KV_ROBOTS, TELEMETRY, Declarations
from contracts.subjects import Namespace
from services.gateway.robots.ingest import Telemetry
from services.gateway.robots.registry import RobotRegistry
from tests.support.gateway import Gateway, Tenant

SAMPLE = {"joint_angles": [0.0] * 6}


@pytest.fixture
def gateway_overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    return dict(getattr(request, "param", {}))


async def robots_kv(js: JetStreamContext, namespace: Namespace) -> KeyValue:
    return await js.key_value(namespace.bucket(KV_ROBOTS))


async def kv_value(kv: KeyValue, key: str) -> bytes | None:
    try:
        return (await kv.get(key)).value
    except KeyNotFoundError:
        return None


async def wait_in_kv(kv: KeyValue, key: str, timeout_s: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout_s):
        while (value := await kv_value(kv, key)) is None:  # noqa: ASYNC110 - server state, no event
            await asyncio.sleep(0.02)
    return value


def post(tenant: Tenant, robot: str, **sample: Any) -> Any:
    return tenant.http.post(f"/v1/robots/{robot}/joints", json={**SAMPLE, **sample})


@pytest.mark.parametrize(
    "gateway_overrides", [{"telemetry_max_bytes": 96 * 1024, "robot_latest_ttl_s": 3600.0}], indirect=True
)
async def test_telemetry_and_kv_robots_are_declared_bounded(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    telemetry = await js.stream_info(namespace.stream(TELEMETRY))
    assert telemetry.config.max_bytes == 96 * 1024
    assert (await js.stream_info(f"KV_{namespace.bucket(KV_ROBOTS)}")).config.max_age == 3600.0
    batch = [{**SAMPLE, "seq": i} for i in range(1000)]
    for _ in range(4):  # ~1 MiB of samples into a 96 KiB stream: the oldest go
        assert (await acme.http.post("/v1/robots/arm/joints", json={"samples": batch})).status_code == 202
    state = (await js.stream_info(namespace.stream(TELEMETRY))).state
    assert 0 < state.bytes <= 96 * 1024
    assert state.last_seq == 4000


@pytest.mark.parametrize("gateway_overrides", [{"robot_latest_ttl_s": 1.0}], indirect=True)
async def test_a_silent_robots_latest_sample_expires(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await robots_kv(js, namespace)
    assert (await post(acme, "arm", seq=1)).status_code == 202
    await wait_in_kv(kv, tenant_key("acme", "arm"))
    async with asyncio.timeout(10):
        while await kv_value(kv, tenant_key("acme", "arm")) is not None:  # noqa: ASYNC110 - server-side expiry
            await asyncio.sleep(0.1)
    assert (await acme.http.get("/v1/robots/arm/joints/latest")).status_code == 404


@pytest.mark.parametrize("gateway_overrides", [{"robot_max_per_tenant": 3}], indirect=True)
async def test_a_tenant_has_at_most_robot_max_per_tenant_robots(
    gateway: Gateway, acme: Tenant, globex: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    for robot in ("r1", "r2", "r3"):
        assert (await post(acme, robot)).status_code == 202
    refused = await post(acme, "r4")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert "3 robots" in refused.json()["detail"]
    for robot in ("r1", "r2", "r3"):  # the robots it has keep working
        assert (await post(acme, robot)).status_code == 202
    assert (await post(globex, "r4")).status_code == 202  # another tenant has its own count
    url = gateway.url.replace("http://", "ws://") + "/v1/robots/r5/joints/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {acme.key}"}, proxy=None) as ws:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4429
    assert (await acme.http.get("/v1/robots/r4/joints/latest")).status_code == 404


@pytest.mark.parametrize("gateway_overrides", [{"robot_max_per_tenant": 2}], indirect=True)
async def test_robots_written_by_other_replicas_count(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await robots_kv(js, namespace)
    for robot in ("elsewhere-1", "elsewhere-2"):
        sample = JointSample(robot_id=robot, joint_angles=[0.0] * 6, ts="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
        await kv.put(tenant_key("acme", robot), sample.model_dump_json().encode())
    assert (await post(acme, "here")).status_code == 429
    assert (await post(acme, "elsewhere-1")).status_code == 202


@pytest.mark.parametrize("gateway_overrides", [{"robot_max_per_tenant": 2, "robot_admit_cache_s": 0.2}], indirect=True)
async def test_a_forgotten_robot_frees_its_place(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    kv = await robots_kv(js, namespace)
    for robot in ("r1", "r2"):
        assert (await post(acme, robot)).status_code == 202
    assert (await post(acme, "r3")).status_code == 429
    await wait_in_kv(kv, tenant_key("acme", "r1"))
    await kv.delete(tenant_key("acme", "r1"))  # what the TTL does to a robot that fell silent
    async with asyncio.timeout(10):
        while (await post(acme, "r3")).status_code == 429:  # noqa: ASYNC110 - admissions are cached 0.2 s
            await asyncio.sleep(0.1)
    assert (await post(acme, "r1")).status_code == 429  # r3 took its place


@pytest.mark.parametrize(
    "gateway_overrides", [{"robot_latest_max_pending": 2, "robot_latest_flush_ms": 10_000}], indirect=True
)
async def test_the_unwritten_latest_samples_are_bounded(
    gateway: Gateway, acme: Tenant, js: JetStreamContext, namespace: Namespace
) -> None:
    """No flush runs during the test: beyond two unwritten samples, the oldest is written out at once; the
    unwritten ones are read (latest, the robots' list) from memory."""
    telemetry: Telemetry = gateway.app.state.robot_telemetry
    kv = await robots_kv(js, namespace)
    for i in range(6):
        assert (await post(acme, f"r{i}", seq=i)).status_code == 202
        assert len(telemetry.pending) <= 2
    for i in range(4):
        assert json.loads(await kv_value(kv, tenant_key("acme", f"r{i}")) or b"{}")["seq"] == i
    for i in range(6):
        latest = await acme.http.get(f"/v1/robots/r{i}/joints/latest")
        assert latest.json()["seq"] == i
    listed = (await acme.http.get("/v1/robots")).json()["items"]
    assert [r["id"] for r in listed] == [f"r{i}" for i in range(6)]  # r4 and r5 are not in KV yet


async def test_the_registry_remembers_at_most_cache_max_robots(
    js: JetStreamContext, declared: Declarations, namespace: Namespace
) -> None:
    registry = RobotRegistry(await robots_kv(js, namespace), limit=100, cache_max=3, cache_s=60)
    for i in range(10):
        await registry.admit(f"tenant{i % 2}", f"r{i}")
        assert len(registry._admitted) <= 3
        assert sum(len(robots) for robots in registry._by_tenant.values()) <= 3
    assert list(registry._admitted) == [("tenant1", "r7"), ("tenant0", "r8"), ("tenant1", "r9")]
