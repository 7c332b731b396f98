"""A worker's ending fenced on a ``job.dispatched`` stored before JOBS stored slot tokens (an upgrade).

JOBS' ``subject_transform`` applies to what is stored after it: a job dispatched before keeps its
4-token ``job.dispatched``, which the stored form's fence (``….dispatched.*``) does not see, so every
job running across the upgrade had its ending dropped as superseded, and was run again once its
worker went silent. The sink fences such an ending on the subject as it was stored.
"""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from contracts.events.jobs import JobSucceededPayload
from contracts.events.registry import EventType, make_event
from contracts.streams import JOBS, declarations
from contracts.subjects import Namespace, Subjects, event_token
from modal_workers.runtime.sinks import NatsSink
from modal_workers.runtime.sinks.attempt_fence import AttemptSuperseded
from services.common.nats.declarations import apply_declarations, stream_config
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.attempts import dispatched
from tests.support.lap import TENANT

JOB = "job_upgrade"


async def test_an_ending_fenced_on_a_dispatched_stored_before_the_slot_tokens_is_stored(
    js: JetStreamContext, namespace: Namespace, subjects: Subjects, nats_server: EmbeddedNats
) -> None:
    decls = declarations(namespace, frames_max_bytes=1 << 20)
    jobs = decls.stream(JOBS, namespace)
    await js.add_stream(stream_config(jobs.model_copy(update={"subject_transform": None})))  # as it was
    old = await dispatched(js, subjects, JOB, 1)  # stored as jobs.acme.job_upgrade.dispatched
    await apply_declarations(js, decls)  # the upgrade: JOBS stores slot tokens from now on
    superseded = await dispatched(js, subjects, "job_other", 1)
    sink = await NatsSink.connect(nats_server.url, namespace.name)
    try:
        for job_id, seq in ((JOB, old), ("job_other", superseded + 1000)):  # the second: not its latest
            event = make_event(EventType.JOB_SUCCEEDED, JobSucceededPayload(), tenant=TENANT, source="worker",
                               job_id=job_id, kind="pose", attempt=1)  # fmt: skip
            if job_id == JOB:
                await sink.send("succeeded", event, dispatched_seq=seq)
            else:
                with pytest.raises(AttemptSuperseded):
                    await sink.send("succeeded", event, dispatched_seq=seq)
    finally:
        await sink.close()
    stored = (await js.stream_info(namespace.stream(JOBS), subjects_filter=">")).state.subjects or {}
    ends = sorted(subject for subject in stored if event_token(subject) == "succeeded")
    assert [f".{JOB}.succeeded." in end for end in ends] == [True], stored  # the old-form fence let it in
