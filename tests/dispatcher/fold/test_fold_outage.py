"""An outage that outlasts a fold batch's deadline again and again does not dead-letter good events.

Each time NATS or KV stays away past a batch's deadline (0.8 x the ack wait: 24 s by default), the
partition gives the batch back, and the server counts one more delivery of each of its events. With the
partition consumers at ``event_max_deliver`` (5), an outage of two minutes dead-lettered the events in
hand: their jobs stood still until the fold audit repaired them. The partitions now count up to
``fold_max_deliver`` (100: about 40 minutes of outage); a failing event is still dead-lettered after
``event_max_deliver`` tries in place. The outage is played by a fold that gives the job's events back
while the server has delivered them at most :data:`GIVEN_BACK` times.
"""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.job_parts import JobStatus
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.batch import BatchExpired, BatchFold
from services.dispatcher.fold.partitions import fold_durable
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import POSE, local_route, submit, wait_record

pytestmark = pytest.mark.timeout(120)
EVENT_MAX_DELIVER = 2
GIVEN_BACK = 4
"""Deliveries of each of the job's events that end in an outage past the batch's deadline."""


async def test_a_batch_given_back_more_often_than_event_max_deliver_is_folded_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
    start_dispatcher: StartDispatcher,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    job_id = ""
    deliveries: list[int] = []
    real_fold = BatchFold.fold

    async def through_an_outage(self: BatchFold, msgs: list[Msg], deadline: float) -> None:
        mine = [m.metadata.num_delivered for m in msgs if job_id and job_id in m.subject]
        if mine and min(mine) <= GIVEN_BACK:
            deliveries.append(min(mine))
            raise BatchExpired(f"job {job_id}: KV did not answer before the batch's deadline")
        await real_fold(self, msgs, deadline)

    monkeypatch.setattr(BatchFold, "fold", through_an_outage)
    dispatcher = await start_dispatcher(
        {"pose": local_route("noop")}, fold_partitions=1, event_max_deliver=EVENT_MAX_DELIVER, event_ack_wait_s=2.0
    )
    info = await js.consumer_info(namespace.stream(JOBS), fold_durable(0))
    assert info.config.max_deliver == dispatcher.settings.fold_max_deliver == 100
    job_id = await submit(js, jobs_kv, subjects, POSE)
    record = await wait_record(jobs_kv, job_id, lambda r: r.terminal, 60)
    assert record.status is JobStatus.SUCCEEDED
    assert sorted(set(deliveries)) == list(range(1, GIVEN_BACK + 1))  # job.created given back 4 times, then folded
    assert dispatcher.guard is not None
    assert dispatcher.guard.metrics()["dead_lettered"] == {}
