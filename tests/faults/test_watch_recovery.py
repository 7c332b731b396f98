"""A KV watch outlives a nats-server restart: a write made after it is seen, never silently missed.

The notifier's webhook endpoints are a KV watch (:class:`~services.notifier.webhooks.targets.EndpointCache`);
the fan-out waits until it has seen every write before it fans an event out, so an endpoint made
before an event gets that event. After a restart the watch's ordered consumer is gone until the watch
makes it anew (at the reconnect; else after two missed heartbeats, 30 s): ``caught_up`` must not pretend
meanwhile.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness.fault_stack import connect_test_client
from bench.harness.waiting import wait_for
from contracts.streams import KV_WEBHOOKS, declarations
from contracts.subjects import Namespace
from services.common.nats.declarations import apply_declarations
from services.common.nats.server.embedded import EmbeddedNats
from services.notifier.webhooks.targets import EndpointCache
from tests.support.events import create_endpoint

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


async def test_endpoint_written_after_a_restart_is_seen(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    nc = await connect_test_client(server.url)
    ns = Namespace("")
    try:
        js = nc.jetstream()
        await apply_declarations(js, declarations(ns, frames_max_bytes=1 << 24, telemetry_max_bytes=1 << 24))
        kv = await js.key_value(ns.bucket(KV_WEBHOOKS))
        cache = EndpointCache(kv, js, ns.bucket(KV_WEBHOOKS))
        await cache.start()
        before = await create_endpoint(kv, "acme", "http://127.0.0.1:9/before")
        await cache.caught_up()
        assert cache.get("acme", before.id) is not None

        server.kill()
        server.start()
        await wait_for(lambda: nc.stats["reconnects"] >= 1 and nc.is_connected, 10, "the test's connection back")
        after = await create_endpoint(kv, "acme", "http://127.0.0.1:9/after")
        attempts = 0
        while True:  # a caller retries what it could not do yet (the fan-out retries its batch)
            attempts += 1
            try:
                await cache.caught_up(timeout_s=2.0)
                break
            except TimeoutError:
                assert attempts < 5, "the watch never caught up"
        assert cache.get("acme", after.id) is not None  # seen, not skipped
        assert cache.get("acme", before.id) is not None
        await cache.stop()
    finally:
        await nc.close()
        server.stop()
