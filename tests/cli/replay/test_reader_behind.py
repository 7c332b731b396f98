"""A read to the stream's end waits for what the stream's leader holds, even while its consumer's replica
lags: an R1 ordered consumer on an R3 stream sits on any replica, and one just back from a partition says
nothing is pending before it has caught up. The netfaults checker read JOBS so right after a heal and
found 25 acknowledged jobs "lost" that KV, SSE and the webhooks had all seen (a fresh clone, 2026-11-29).

One server has no lagging replica, so the leader's two answers (the stream's last sequence, and that the
message is stored) are given one message ahead of the store, and that message is stored once the reader,
idle with nothing pending, asks whether the leader holds it: as a replica catching up delivers it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from contracts.events.registry import EventType
from contracts.streams import JOBS, Declarations
from contracts.subjects import Namespace, Subjects
from services.cli.replay.reader import consumer_config, read_range
from services.common.config import BaseServiceSettings
from tests.support.events import job_event, publish


async def test_a_read_waits_for_the_message_its_replica_has_not_caught_up_with(
    nc: NatsClient, js: JetStreamContext, declared: Declarations, namespace: Namespace, subjects: Subjects,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    stored = [await publish(js, subjects, job_event("acme", f"job_{n}", EventType.JOB_LOG)) for n in range(3)]
    ahead = stored[-1] + 1  # what the leader already holds, in this simulation
    stream_info, get_msg, asked = JetStreamContext.stream_info, JetStreamContext.get_msg, asyncio.Event()

    async def leaders_info(self: JetStreamContext, name: str, *args: Any, **kwargs: Any) -> Any:
        info = await stream_info(self, name, *args, **kwargs)
        info.state.last_seq = max(info.state.last_seq, ahead)
        return info

    async def leaders_get(self: JetStreamContext, name: str, seq: int | None = None, **kwargs: Any) -> Any:
        if seq == ahead:  # the reader, idle with nothing pending, asks whether the leader holds it
            asked.set()
        if seq == ahead or (seq is None and kwargs.get("subject")):  # that message, or the last on a subject
            return RawStreamMsg(seq=ahead)
        return await get_msg(self, name, seq, **kwargs)

    monkeypatch.setattr(JetStreamContext, "stream_info", leaders_info)
    monkeypatch.setattr(JetStreamContext, "get_msg", leaders_get)
    settings = BaseServiceSettings(nats_url="nats://unused", namespace=namespace.name)

    async def caught_up() -> None:  # the replica delivers it once the reader waits for it (the old one ended)
        await asked.wait()
        await publish(js, subjects, job_event("acme", "job_late", EventType.JOB_LOG))

    late = asyncio.create_task(caught_up())
    try:
        seqs = [
            m.metadata.sequence.stream
            async for m in read_range(nc, settings, JOBS, "jobs.>", consumer_config(None, None))
        ]
    finally:
        late.cancel()
    assert seqs == [*stored, ahead]
