"""A KV watch's start while JetStream answers late: made again, within the time its snapshot may take.

A fresh clone's CI run failed a dispatcher's start on its fair clocks' watch: on a loaded machine the watch's
consumer info went unanswered within the JetStream context's timeout, and the start raised. Here the server is
stopped (SIGSTOP) while the watch starts, with a short timeout, and goes on a moment later."""

from __future__ import annotations

from pathlib import Path

from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from services.common.nats.kv_watch import KvWatch
from tests.support.stopping import stallable_server, through_a_stall


async def test_a_watch_started_while_jetstream_answers_late_is_made_again_and_reads_its_snapshot(
    tmp_path: Path,
) -> None:
    async with stallable_server(tmp_path / "nats") as (pid, js):
        kv: KeyValue = await js.create_key_value(KeyValueConfig(bucket="clocks", storage=StorageType.MEMORY))
        await kv.put("pose", b"1")
        seen: list[tuple[str, bool]] = []
        watch = KvWatch(kv, lambda entry, initial: seen.append((entry.key, initial)), name="clocks-watch")
        try:
            await through_a_stall(pid, lambda: watch.start(snapshot_timeout_s=15))
            assert watch.watching
            assert seen == [("pose", True)]
            await kv.put("pose", b"2")
            await wait_for(lambda: len(seen) == 2, timeout_s=10, what="the write after the snapshot")
            assert seen[1] == ("pose", False)
        finally:
            await watch.stop()
