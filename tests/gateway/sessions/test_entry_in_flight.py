"""A session's KV entry whose create is still in flight, on a 3-node cluster.

A session's first frame makes its KV ``sessions`` entry. When that create times out (503: the
bucket's leader lost its quorum and holds the create in flight), the client sends the frame again.
The create of the retry is refused while the first is in flight, and the key still reads as absent:
the re-read raised ``KeyNotFoundError`` (a 500). It is :class:`WriteInFlight` now, a time-out the
gateway answers with 503 and ``Retry-After``; once the quorum is back, the entry is the first try's.

The same for a frame: sent again while its first try's publish is in flight, it was refused, read the
stream again and was refused again, 20 times at once, then a 503 "contended". It waits between tries
now, as a KV write does (:data:`~services.common.nats.kv_writes.IN_FLIGHT_TRIES` publishes, then a 503), and
once the first try is applied the numbering reads that frame and goes on after it. A frame sent again
with its ``Idempotency-Key`` is that first try once it is applied (its seq), not a second frame.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from bench.harness.waiting import wait_for
from contracts.api.sessions import SessionEntry
from contracts.envelope import utc_now
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.session_feed import H_SEQ
from contracts.specs.jobs import parse_job_spec
from contracts.streams import FRAMES, declarations
from contracts.subjects import Namespace, Subjects
from services.common.http.problem import ProblemError
from services.common.nats.declarations import apply_declarations
from services.common.nats.kv_writes import IN_FLIGHT_TRIES, WriteInFlight
from services.common.nats.server.cluster import NatsCluster
from services.common.nats.server.embedded import EmbeddedNats
from services.gateway.sessions import numbering as numbering_module
from services.gateway.sessions.numbering import FrameNumbering
from tests.support.stopping import (
    on_bucket_leader,
    once_available,
    once_created,
    pausable_cluster,
    quorum_lost,
)


async def test_a_frame_sent_again_while_its_sessions_entry_is_in_flight_is_a_time_out(tmp_path: Path) -> None:
    async with pausable_cluster(tmp_path / "cluster") as cluster, on_bucket_leader(cluster, "sessions") as (nc, leader):
        kv = await nc.jetstream(timeout=1.0).key_value("sessions")
        ns = Namespace("t" + new_id("ns")[-10:])
        settings = SimpleNamespace(ns=ns, session_cache_max=16)
        state: Any = SimpleNamespace(settings=settings, subjects=Subjects(ns), kv=SimpleNamespace(sessions=kv))
        numbering = FrameNumbering(state)
        record = JobRecord.new(new_id("job"), "acme", parse_job_spec({"kind": "splat"}), utc_now())
        with quorum_lost(cluster, leader):
            with pytest.raises(TimeoutError) as first:  # the first frame's create: proposed, unanswered
                await numbering.publish(record, b"frame", lambda seq: {})
            assert type(first.value) is not WriteInFlight
            with pytest.raises(WriteInFlight):  # the frame sent again: not KeyNotFoundError (a 500)
                await numbering.publish(record, b"frame", lambda seq: {})
        kv = await nc.jetstream(timeout=10.0).key_value("sessions")
        stored = await once_created(kv, tenant_key("acme", record.id))
        assert SessionEntry.model_validate_json(stored).id == record.id  # the first try's entry


async def on_leader(nc: NatsClient, stream: str, leader: EmbeddedNats) -> None:
    """Move ``stream``'s leadership to ``leader`` (a step-down with it preferred, until it holds)."""
    js = nc.jetstream(timeout=10.0)

    async def led() -> bool:
        info = await js.stream_info(stream)
        if info.cluster is not None and info.cluster.leader == leader.server_name:
            return True
        request = json.dumps({"placement": {"preferred": leader.server_name}}).encode()
        with contextlib.suppress(Exception):  # an election under way: asked again
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", request, timeout=5.0)
        return False

    await wait_for(led, timeout_s=30, what=f"{stream} led by {leader.server_name}", every_s=0.5)


@dataclass
class Frames:
    """A session's numbering on a 3-node cluster, the FRAMES stream and the session's entry led by
    ``leader`` (so the entry stays readable while that node's followers are paused)."""

    cluster: NatsCluster
    leader: EmbeddedNats
    js: JetStreamContext
    publishes: Counted
    numbering: FrameNumbering
    record: JobRecord
    stream: str
    subject: str

    async def publish(self, frame: bytes, key: str | None = None) -> int:
        return await self.numbering.publish(self.record, frame, numbered, key)

    async def stored(self) -> list[bytes]:
        """The frames the stream holds on the session's subject, in order."""
        last = await self.js.get_last_msg(self.stream, self.subject)
        messages = [await self.js.get_msg(self.stream, seq=seq) for seq in range(1, int(last.seq or 0) + 1)]
        return [message.data or b"" for message in messages if message.subject == self.subject]


def numbered(seq: int) -> dict[str, str]:
    return {H_SEQ: str(seq)}


@contextlib.asynccontextmanager
async def frames_on_one_leader(tmp_path: Path) -> AsyncIterator[Frames]:
    async with pausable_cluster(tmp_path / "cluster") as cluster, on_bucket_leader(cluster, "sessions") as (nc, leader):
        ns = Namespace("t" + new_id("ns")[-10:])
        decls = declarations(ns, replicas=3)
        js = nc.jetstream(timeout=10.0)
        await apply_declarations(js, decls.model_copy(update={"streams": (decls.stream(FRAMES, ns),), "buckets": ()}))
        await on_leader(nc, ns.stream(FRAMES), leader)  # the frames and the session's entry on the node left alone
        publishes = Counted(nc.jetstream(timeout=1.0))
        settings = SimpleNamespace(ns=ns, session_cache_max=16)
        kv = SimpleNamespace(sessions=await js.key_value("sessions"))
        state: Any = SimpleNamespace(settings=settings, subjects=Subjects(ns), kv=kv, js=publishes)
        record = JobRecord.new(new_id("job"), "acme", parse_job_spec({"kind": "splat"}), utc_now())
        subject = Subjects(ns).session_frames("acme", record.id)
        yield Frames(cluster, leader, js, publishes, FrameNumbering(state), record, ns.stream(FRAMES), subject)


async def test_a_frame_sent_again_while_its_first_try_is_in_flight_waits_then_is_a_time_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(numbering_module, "PUBLISH_TIMEOUT_S", 1.0)
    async with frames_on_one_leader(tmp_path) as frames:
        assert await frames.publish(b"frame 1") == 1
        with quorum_lost(frames.cluster, frames.leader):
            with pytest.raises(ProblemError) as first:  # frame 2: proposed, unanswered
                await frames.publish(b"frame 2")
            assert "TimeoutError" in first.value.detail
            frames.publishes.count = 0
            with pytest.raises(ProblemError) as again:  # sent again: refused while the first is in flight
                await frames.publish(b"frame 2")
            assert again.value.status == 503
            assert "WriteInFlight" in again.value.detail  # not "contended" after 20 tries at once
            assert frames.publishes.count == IN_FLIGHT_TRIES
        seq = await once_available(frames.publish, b"frame 3")
        assert seq == 3  # the first try of frame 2 was stored as 2; the numbering read it and went on
        assert await frames.stored() == [b"frame 1", b"frame 2", b"frame 3"]


async def test_a_frame_sent_again_with_its_idempotency_key_after_a_time_out_is_the_one_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(numbering_module, "PUBLISH_TIMEOUT_S", 1.0)
    async with frames_on_one_leader(tmp_path) as frames:
        assert await frames.publish(b"frame 1", "cam-1") == 1
        with quorum_lost(frames.cluster, frames.leader):
            with pytest.raises(ProblemError) as first:  # frame 2: proposed, unanswered
                await frames.publish(b"frame 2", "cam-2")
            assert "TimeoutError" in first.value.detail
            frames.publishes.count = 0
            with pytest.raises(ProblemError) as again:  # its key's first try is in flight: it waits
                await frames.publish(b"frame 2", "cam-2")
            assert again.value.status == 503
            assert "WriteInFlight" in again.value.detail
            assert frames.publishes.count == IN_FLIGHT_TRIES
        assert await once_available(frames.publish, b"frame 2", "cam-2") == 2  # the first try's seq
        assert await frames.publish(b"frame 3", "cam-3") == 3
        assert await frames.publish(b"frame 3", "cam-3") == 3
        with pytest.raises(ProblemError) as reused:
            await frames.publish(b"frame 4", "cam-3")
        assert reused.value.status == 422
        # what a retry is answered once the session takes no more: the seq it was stored as, or nothing
        assert await frames.numbering.stored_seq(frames.record, b"frame 2", "cam-2") == 2
        assert await frames.numbering.stored_seq(frames.record, b"frame 4", "cam-4") is None
        with pytest.raises(ProblemError) as other:
            await frames.numbering.stored_seq(frames.record, b"frame 4", "cam-3")
        assert other.value.status == 422
        assert await frames.stored() == [b"frame 1", b"frame 2", b"frame 3"]  # each once


class Counted:
    """A JetStream context whose publishes are counted (its other calls passed on)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js, self.count = js, 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return await self.js.publish(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)
