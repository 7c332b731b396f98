"""A session's KV entry whose create is still in flight, on a 3-node cluster.

A session's first frame makes its KV ``sessions`` entry. When that create times out (503: the
bucket's leader lost its quorum and holds the create in flight), the client sends the frame again.
The create of the retry is refused while the first is in flight, and the key still reads as absent:
the re-read raised ``KeyNotFoundError`` (a 500). It is :class:`WriteInFlight` now, a time-out the
gateway answers with 503 and ``Retry-After``; once the quorum is back, the entry is the first try's.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.api.sessions import SessionEntry
from contracts.envelope import utc_now
from contracts.ids import new_id, tenant_key
from contracts.job_record import JobRecord
from contracts.specs.jobs import parse_job_spec
from contracts.subjects import Namespace, Subjects
from services.common.nats.kv import WriteInFlight
from services.gateway.sessions.numbering import FrameNumbering
from tests.support.stopping import on_bucket_leader, once_created, pausable_cluster, quorum_lost


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
