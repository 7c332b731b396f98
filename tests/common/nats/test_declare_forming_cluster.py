"""A replicated stream a cluster cannot place yet is declared again, not refused at once.

JetStream answers as soon as a meta leader is elected, but a three-replica stream cannot be placed
until three nodes are known: nats-server refuses it with 10005, "no suitable peers for placement". A
fresh clone's test run met that right after ``wait_jetstream`` on a new cluster: ``apply_declarations``
raised it at once. So would an operator declaring the streams of a cluster whose last node is still
starting. The steps that make streams (``apply_declarations``, the notifier's buckets) now try it
again for as long as they wait out NATS being away, then give the refusal.

A cluster that knows fewer nodes than a stream's replicas is that state made lasting (four replicas on
three nodes), so the test need not catch the moment a forming cluster passes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

from contracts.ids import new_id
from contracts.streams import JOBS, declarations
from contracts.subjects import Namespace
from services.common.nats import publish
from services.common.nats.declarations import apply_declarations
from services.common.nats.publish import PLACEMENT_PENDING, placement_pending, until_answered
from services.common.nats.server.cluster import NatsCluster, wait_jetstream


class _Retried(logging.Handler):
    """Sets :attr:`seen` once a step says it is trying again for want of peers."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retried" in record.getMessage() and "no suitable peers" in record.getMessage():
            self.seen.set()


async def _tried_again(declaring: asyncio.Task[object], retried: _Retried) -> None:
    """``declaring`` says it tries again (then it is cancelled), rather than raising the refusal at once."""
    retried.seen.clear()
    seen = asyncio.create_task(retried.seen.wait())
    await asyncio.wait({declaring, seen}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if declaring.done():  # refused at once (the old code: BadRequestError 10005)
        seen.cancel()
        declaring.result()
    assert seen.done(), "the declaration neither tried again nor gave up"
    declaring.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await declaring


async def test_a_stream_the_cluster_cannot_place_yet_is_declared_again_then_refused(tmp_path: Path) -> None:
    ns = Namespace("t" + new_id("ns")[-10:])
    with NatsCluster(tmp_path / "cluster") as cluster:
        await wait_jetstream(cluster.url, 30)
        nc = await nats.connect(cluster.url.split(","), connect_timeout=2)
        retried, logger = _Retried(), logging.getLogger(publish.__name__)
        level = logger.level
        logger.addHandler(retried)
        logger.setLevel(logging.INFO)
        try:
            js = nc.jetstream(timeout=10.0)
            decls = declarations(ns, replicas=4)
            only_jobs = decls.model_copy(update={"streams": (decls.stream(JOBS, ns),), "buckets": ()})
            applying = asyncio.create_task(apply_declarations(js, only_jobs))
            await _tried_again(applying, retried)
            tries = 0

            async def make() -> None:
                nonlocal tries
                tries += 1
                probe = StreamConfig(name=ns.stream("PROBE"), subjects=[ns.subject("probe")], num_replicas=4)
                await js.add_stream(probe)

            with pytest.raises(BadRequestError) as refused:
                await until_answered(make, "declare the probe", retry_for_s=1.0, also_retried=placement_pending)
            assert refused.value.err_code == PLACEMENT_PENDING
            assert tries >= 3, "tried again for a second, then the refusal"
        finally:
            logger.removeHandler(retried)
            logger.setLevel(level)
            await nc.close()
