"""A session feed that starts while JetStream cannot make its consumers waits and starts once it can,
instead of failing its session. A cluster electing its meta leader refuses with 10008, or does not answer.
In a fault-suite run, two sessions failed so on every attempt while a node was partitioned
(``worker_error``: "JetStream system temporarily unavailable")."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import nats
import pytest

from bench.harness.waiting import wait_for
from contracts.session_feed import FeedFrame
from contracts.streams import FRAMES, declarations
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import apply_declarations
from services.common.nats.publish import until_answered
from services.common.nats.server.cluster import wait_current
from services.common.session_feed import NatsSessionFeed
from tests.common.test_session_feed_start import SESSION, publish_frame
from tests.support.stopping import pausable_cluster, sigstop

pytestmark = pytest.mark.timeout(120)


async def test_a_feed_started_while_the_cluster_cannot_make_consumers_starts_once_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ns = Namespace()
    subjects = Subjects(ns)
    caplog.set_level(logging.INFO, logger="services.common.nats.publish")
    async with pausable_cluster(tmp_path / "cluster") as cluster:
        kept, *stopped = cluster.nodes
        nc = await nats.connect(kept.url, connect_timeout=2)
        try:
            js = nc.jetstream(timeout=2.0)
            decls = declarations(ns, replicas=3)
            await apply_declarations(js, decls.model_copy(update={"streams": (decls.stream(FRAMES),), "buckets": ()}))
            await wait_current(js, [ns.stream(FRAMES)])
            frames: list[int] = []

            def on_item(item: Any, _: bytes | None) -> None:
                if isinstance(item, FeedFrame):
                    frames.append(item.seq)

            for node in stopped:
                assert node.pid is not None
                sigstop(node.pid)
            starting = asyncio.ensure_future(NatsSessionFeed(js, ns, "acme", SESSION, None, on_item).start())
            await wait_for(lambda: starting.done() or "retried: NATS unavailable" in caplog.text, 30, "a retry")
            assert not starting.done(), starting.exception()  # it waits, where it raised
            for node in stopped:
                assert node.pid is not None
                os.kill(node.pid, signal.SIGCONT)
            await asyncio.wait_for(starting, 30)
            await until_answered(lambda: publish_frame(js, subjects, 1), "a frame")  # its id: stored once
            await wait_for(lambda: frames == [1], 30, "the frame")
        finally:
            await nc.close()
