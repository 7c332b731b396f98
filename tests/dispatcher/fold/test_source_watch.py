"""``JOBS_FOLD``'s source, stalled by nats-server's retry back-off, restarted by a step-down
(:mod:`services.dispatcher.fold.source_watch`), on three real nodes.

A source whose consumer could not be made (here: JOBS did not exist yet; after a fault: JOBS had no
leader) is tried again after 10 s, then 20 s, … . Made 13 s after ``JOBS_FOLD``, JOBS had its first
event sourced 27.6 s after it was made, without the watch. The pause of the node leading both
streams stalls it the same way, but not every time (in some runs JOBS had its new leader before the
first try), so the test makes the back-off itself.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig, StreamSource

from contracts.streams import JOBS, JOBS_FOLD
from contracts.subjects import Namespace
from services.common.nats.cluster import wait_current
from services.dispatcher.fold.source_watch import SourceWatch
from tests.support.stopping import pausable_cluster

pytestmark = pytest.mark.timeout(120)
FAILED_TRIES_S = 13.0
"""Long enough for two failed tries of the source (at once, then 12 s later): the next is 22 s later."""
SOURCED_WITHIN_S = 18.0
"""After JOBS is made: the watch's step-down comes after 3 s of silence; nats-server's next try after 20 s."""


async def _sourced(js: JetStreamContext, fold: str) -> bool:
    try:
        return (await js.stream_info(fold)).state.messages >= 1
    except Exception:  # noqa: BLE001 - a stream electing its leader: asked again
        return False


async def test_a_source_held_back_by_the_servers_retries_is_restarted(tmp_path: Path) -> None:
    ns = Namespace()
    fold, jobs = ns.stream(JOBS_FOLD), ns.stream(JOBS)
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        nc = await nats.connect(servers=cluster.url.split(","), connect_timeout=2)
        watch = SourceWatch(nc, fold, jobs, check_every_s=0.5)
        try:
            js = nc.jetstream(timeout=10.0)
            sources = [StreamSource(name=jobs)]
            await js.add_stream(StreamConfig(name=fold, retention=RetentionPolicy.WORK_QUEUE, num_replicas=3,
                                             sources=sources))  # fmt: skip
            await asyncio.sleep(FAILED_TRIES_S)
            await js.add_stream(StreamConfig(name=jobs, subjects=[ns.subject("jobs.>")], num_replicas=3))
            await wait_current(js, [jobs])
            made = time.monotonic()
            await watch.start()
            await js.publish(ns.subject("jobs.acme.job_1.log"), b"{}")
            while not await _sourced(js, fold):
                waited = time.monotonic() - made
                assert waited < SOURCED_WITHIN_S, f"nothing sourced {waited:.1f} s after JOBS was made"
                await asyncio.sleep(0.25)
            assert watch.step_downs == 1
        finally:
            await watch.stop()
            await nc.close()
