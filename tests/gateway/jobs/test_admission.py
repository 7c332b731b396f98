"""Quotas at submit through the HTTP API and the real dispatcher: max queued jobs (429 + Retry-After,
changed in KV without a restart) and GPU-seconds per day (429 with its own code)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from contracts import streams
from contracts.quotas import TenantQuota, seconds_to_midnight
from contracts.subjects import Namespace, Subjects
from services.common.nats.server.embedded import EmbeddedNats
from services.common.quotas import QuotaBook
from services.dispatcher.service import Dispatcher
from tests.support.dispatcher import POSE, dispatcher_settings, local_route
from tests.support.gateway import Gateway, Tenant
from tests.support.scheduling import InstantBackend, entries_queued

PROBLEM = "application/problem+json"


@pytest.fixture
def gateway_overrides() -> dict[str, object]:
    """URL inputs allowed; quota changes seen at once."""
    return {"allow_url_inputs": True, "quota_cache_s": 0.0}


@pytest.fixture
async def book(js: JetStreamContext, namespace: Namespace, gateway: Gateway) -> QuotaBook:
    """The quotas and usage of this test's namespace."""
    quotas = await js.key_value(namespace.bucket(streams.KV_QUOTAS))
    usage = await js.key_value(namespace.bucket(streams.KV_TENANT_USAGE))
    return QuotaBook(quotas, usage, TenantQuota(), ttl_s=0.0)


@pytest.fixture
async def held_dispatcher(
    nats_server: EmbeddedNats, namespace: Namespace, tmp_path: Path, js: JetStreamContext, subjects: Subjects
) -> AsyncIterator[tuple[Dispatcher, InstantBackend]]:
    """A dispatcher whose one pose slot is held (its backend's gate stays shut)."""
    backend = InstantBackend(js, subjects)
    settings = dispatcher_settings(nats_server.url, namespace, tmp_path / "dispatcher")
    dispatcher = Dispatcher(settings, routes={"pose": local_route("noop", concurrency=1)}, backends={"local": backend})
    await dispatcher.start()
    yield dispatcher, backend
    backend.gate.set()  # a ticket handler waiting at the gate would hold the broker's stop
    await dispatcher.stop()
    await backend.close()


async def test_max_queued_answers_429_with_retry_after_and_a_kv_change_applies_at_once(
    acme: Tenant, book: QuotaBook, held_dispatcher: tuple[Dispatcher, InstantBackend]
) -> None:
    dispatcher, _ = held_dispatcher
    await book.set("acme", TenantQuota(max_queued=2))
    assert (await acme.http.post("/v1/jobs", json=POSE)).status_code == 201
    await entries_queued(dispatcher, "pose", 1, claimed=1)  # it holds the slot (unclaimed, it would count)
    for _ in range(2):  # two wait
        assert (await acme.http.post("/v1/jobs", json=POSE)).status_code == 201
    await entries_queued(dispatcher, "pose", 3, claimed=1)  # waiting = unclaimed: the held one is not
    refused = await acme.http.post("/v1/jobs", json=POSE)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["code"] == "quota_max_queued"
    await book.set("acme", TenantQuota(max_queued=3))
    assert (await acme.http.post("/v1/jobs", json=POSE)).status_code == 201


async def test_a_job_beyond_the_days_gpu_seconds_is_refused_with_its_code(acme: Tenant, book: QuotaBook) -> None:
    await book.set("acme", TenantQuota(gpu_seconds_per_day=10.0))
    await book.add_gpu_seconds("acme", 9.5)
    assert (await acme.http.post("/v1/jobs", json=POSE)).status_code == 201  # no run time observed: 9.5 + 0
    await book.add_gpu_seconds("acme", 1.0)
    refused = await acme.http.post("/v1/jobs", json=POSE)
    assert refused.status_code == 429
    assert refused.json()["code"] == "quota_gpu_seconds"
    assert abs(int(refused.headers["Retry-After"]) - seconds_to_midnight()) <= 5
