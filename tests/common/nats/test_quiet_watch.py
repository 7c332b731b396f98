"""A quiet KV watch: its consumer asks for a heartbeat every 15 s, not 5, and a restarted server does not
leave it blind until two heartbeats are missed (30 s): it is made anew at the reconnect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from services.common.nats.quiet_watch import WATCH_HEARTBEAT_S, watch_keys
from services.common.nats.server.embedded import EmbeddedNats

SEEN_WITHIN_S = 8.0
"""Well under two missed heartbeats (30 s): only the reconnect can have made the consumer anew."""


async def next_key(watcher: KeyValue.KeyWatcher, timeout_s: float) -> str:
    """The key of the next change the watch hands on (past the snapshot's end marker)."""
    async with asyncio.timeout(timeout_s):
        while True:
            entry = await watcher.updates(timeout=timeout_s)  # type: ignore[no-untyped-call]
            if entry is not None:
                return str(entry.key)


async def test_a_watch_asks_for_heartbeats_seconds_apart_and_sees_writes_soon_after_a_server_restart(
    tmp_path: Path,
) -> None:
    server = EmbeddedNats(tmp_path / "nats", sync_interval="2m").start()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket="quiet", storage=StorageType.FILE))
        watcher = await watch_keys(kv)
        consumer = await watcher._sub.consumer_info()
        assert consumer.config.idle_heartbeat == WATCH_HEARTBEAT_S == 15.0
        await kv.put("before", b"1")
        assert await next_key(watcher, 5.0) == "before"

        server.stop()  # the watch's consumer lived in the server's memory: it is gone
        server.start()
        await wait_for(lambda: nc.stats["reconnects"] >= 1 and nc.is_connected, 15.0, "the reconnect")
        while True:  # JetStream may answer a moment after the reconnect
            try:
                await kv.put("after", b"2")
                break
            except (nats.errors.Error, TimeoutError):
                await asyncio.sleep(0.2)
        assert await next_key(watcher, SEEN_WITHIN_S) == "after"
        await watcher.stop()  # type: ignore[no-untyped-call]
    finally:
        await nc.close()
        server.stop()
