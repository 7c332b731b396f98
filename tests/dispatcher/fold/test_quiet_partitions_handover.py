"""A replica stopped while another runs, its partitions quiet: the next event of each is folded at once.

A rolling restart that starts the new replica before it stops the old one: the old replica's quiet
partitions each leave a 30 s pull on the server, queued ahead of the new replica's own. The server
pins the next event's partition to the first waiting request whose client still listens, so the
stopped replica's requests must not hold it (a partition pinned to a client gone waits for the pin's
timeout, ``event_ack_wait_s`` + 2 s: 32 s in production). The partitions' state is read before the stop
only: a consumer info makes the server sweep requests whose client is gone, which would hide that.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bench.harness.waiting import wait_for
from contracts.events.jobs import JobHeartbeatPayload
from contracts.events.registry import EventType
from contracts.streams import JOBS
from contracts.subjects import Namespace, Subjects
from services.dispatcher.fold.partitions import fold_durable, fold_settled
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import fold_consumer_info, local_route, submit, wait_record
from tests.support.events import job_event, publish

PARTITIONS = 4
JOB_COUNT = 12
PIN_TIMEOUT_S = 22.0
"""The pin's timeout here (ack wait 20 s + 2 s): a partition pinned to the gone replica's request waits it."""
FOLDED_WITHIN_S = 6.0
WAITS_ON_AN_UPLOAD = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}


async def _requests_waiting(nc: NatsClient, ns: Namespace, at_least: int) -> bool:
    """Whether every partition is pinned to no one (quiet) with ``at_least`` pulls waiting on it."""
    for partition in range(PARTITIONS):
        info = await fold_consumer_info(nc, ns.stream(JOBS), fold_durable(partition))
        pinned = ((info.get("priority_groups") or [{}])[0]).get("pinned_client_id")
        if pinned or info.get("num_waiting", 0) < at_least:
            return False
    return True


async def test_a_replica_stopped_with_quiet_partitions_leaves_none_pinned_to_it(
    start_dispatcher: StartDispatcher,
    nc: NatsClient,
    js: JetStreamContext,
    jobs_kv: KeyValue,
    subjects: Subjects,
    namespace: Namespace,
) -> None:
    overrides = {"fold_partitions": PARTITIONS, "event_ack_wait_s": PIN_TIMEOUT_S - 2.0}
    first = await start_dispatcher({"pose": local_route("noop")}, **overrides)
    jobs = [await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD) for _ in range(JOB_COUNT)]
    await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=30, what="the first replica folded")
    quiet = "every partition quiet, the first replica's pull waiting on it"
    await wait_for(lambda: _requests_waiting(nc, namespace, 1), timeout_s=20, what=quiet)
    await start_dispatcher({"pose": local_route("noop")}, **overrides)
    both = "the second replica's pulls waiting behind the first's"
    await wait_for(lambda: _requests_waiting(nc, namespace, 2), timeout_s=20, what=both)
    await first.stop()
    at = datetime.now(UTC)
    for job in jobs:
        beat = job_event("acme", job, EventType.JOB_HEARTBEAT, JobHeartbeatPayload())
        await publish(js, subjects, beat.model_copy(update={"time": at}))
    for job in jobs:  # on the old code, every partition waited for the pin's timeout
        await wait_record(jobs_kv, job, lambda r: r.heartbeat_at == at, within_s=FOLDED_WITHIN_S)
