"""The fold's partitions read JOBS itself: where a partition's consumer starts when it is made, and the
upgrade from the copy they read before (``JOBS_FOLD``, sourced from JOBS by partition).

JOBS keeps 30 days of events, so a consumer made anew must not start at its first message: it starts
at the fold's floor. A consumer deleted under a running dispatcher is made again from there.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, RetentionPolicy, StreamConfig, StreamSource, SubjectTransform
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from bench.harness.message_counter import counting
from bench.harness.waiting import wait_for
from contracts.events.jobs import JobHeartbeatPayload
from contracts.events.registry import EventType
from contracts.streams import JOBS, JOBS_FOLD
from contracts.subjects import Namespace, Subjects
from services.common.nats.declarations import NotDeclaredError
from services.common.nats.server.embedded import EmbeddedNats
from services.dispatcher.fold.partitions import acked_to, fold_durable, fold_settled, fold_start, retire_fold_copy
from tests.dispatcher.conftest import StartDispatcher
from tests.support.dispatcher import local_route, submit, wait_record
from tests.support.events import job_event, publish

PARTITIONS = 2
WAITS_ON_AN_UPLOAD = {"kind": "pose", "inputs": {"video": {"upload_id": "upl_never"}}}


async def test_a_partition_consumer_deleted_is_made_again_from_the_folds_floor(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    """Deleted after its jobs were folded, partition 0's consumer is made again starting after what it
    had acknowledged (not at JOBS' first message: 30 days folded again), and folds what comes next."""
    await start_dispatcher({"pose": local_route("noop")}, fold_partitions=PARTITIONS)
    jobs = [await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD) for _ in range(8)]
    await wait_for(lambda: fold_settled(js, namespace, PARTITIONS), timeout_s=30, what="the jobs folded")
    stream = namespace.stream(JOBS)
    floor = (await js.consumer_info(stream, fold_durable(0))).ack_floor.stream_seq + 1
    assert floor > 1
    await js.delete_consumer(stream, fold_durable(0))
    at = datetime.now(UTC)
    for job in jobs:  # each job's partition folds its heartbeat, partition 0's once it is made again
        beat = job_event("acme", job, EventType.JOB_HEARTBEAT, JobHeartbeatPayload())
        await publish(js, subjects, beat.model_copy(update={"time": at}))
    for job in jobs:
        await wait_record(jobs_kv, job, lambda r: r.heartbeat_at == at, within_s=20)
    made = await js.consumer_info(stream, fold_durable(0))
    assert made.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
    assert made.config.opt_start_seq == floor


async def test_a_smaller_n_deletes_the_larger_ones_consumers_so_growing_again_starts_at_the_folds_floor(
    start_dispatcher: StartDispatcher, js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    """N goes 4, 2, 4. The first dispatcher of N=2 deletes partitions 2 and 3's consumers, so at N=4 again
    every partition is made at the fold's floor. Kept, 2 and 3 would start where they stopped (made when
    JOBS was new, from its first message), and 0 and 1 at the lowest floor of all four: all that N=2 folded
    would be folded again. (How far N=2's partitions got depends on which slots its jobs hashed to, so
    the test compares the consumers with the floor the fold reached, not with a sequence it chose.)"""
    stream, routes = namespace.stream(JOBS), {"pose": local_route("noop")}

    async def fold_jobs(partitions: int) -> None:
        for _ in range(8):
            await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD)
        await wait_for(lambda: fold_settled(js, namespace, partitions), timeout_s=30, what="the jobs folded")

    larger = await start_dispatcher(routes, fold_partitions=4)
    await fold_jobs(4)
    await larger.stop()  # N changes with every replica stopped
    smaller = await start_dispatcher(routes, fold_partitions=2)
    for partition in (2, 3):
        with pytest.raises(NotFoundError):
            await js.consumer_info(stream, fold_durable(partition))
    await fold_jobs(2)
    floor = min([acked_to(await js.consumer_info(stream, fold_durable(p))) for p in (0, 1)]) + 1
    await smaller.stop()
    await start_dispatcher(routes, fold_partitions=4)
    for partition in range(4):
        made = await js.consumer_info(stream, fold_durable(partition))
        assert (made.config.deliver_policy, made.config.opt_start_seq) == (DeliverPolicy.BY_START_SEQUENCE, floor)


async def test_a_start_lists_the_folds_consumers_once_and_reads_only_those_made(
    start_dispatcher: StartDispatcher, nats_server: EmbeddedNats, namespace: Namespace
) -> None:
    """Where the fold starts and which partitions another N left are found from one listing of JOBS'
    consumers: a start reads the infos of its own partitions' consumers and deletes none (it read all
    32 there may be, and once asked to delete each beyond N)."""
    routes = {"pose": local_route("noop")}
    await (await start_dispatcher(routes, fold_partitions=PARTITIONS)).stop()
    async with counting(nats_server.url) as counter, counter.window() as tally:
        await start_dispatcher(routes, fold_partitions=PARTITIONS)

    def requests(kind: str, source_ends: str = "") -> int:
        return sum(n for (k, source), n in tally.sources.items() if k == kind and source.endswith(source_ends))

    infos = [requests("consumer info", f".{fold_durable(p)}") for p in range(32)]
    assert sum(infos) == sum(infos[:PARTITIONS]) > 0, tally.breakdown(40)  # only its own partitions' read
    assert requests("consumer delete") == 0, tally.breakdown(40)
    names = requests("other api", f"CONSUMER.NAMES.{namespace.stream(JOBS)}")
    assert names == 1, tally.breakdown(40)  # one, for the floor and the retired partitions


async def test_an_upgrade_starts_after_what_the_copy_held_and_retires_it(
    js: JetStreamContext, jobs_kv: KeyValue, subjects: Subjects, namespace: Namespace
) -> None:
    """A deployment whose fold read ``JOBS_FOLD``: the partitions' consumers, made for the first time,
    start at the JOBS sequence of the oldest event the copy still held (not folded yet), then at the
    first it had not copied; the copy is deleted once they exist."""
    for _ in range(3):
        await submit(js, jobs_kv, subjects, WAITS_ON_AN_UPLOAD)
    stream, copy = namespace.stream(JOBS), namespace.stream(JOBS_FOLD)
    dest = namespace.subject("fold.0.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}")
    source = StreamSource(name=stream, subject_transforms=[SubjectTransform(namespace.subject("jobs.*.*.*.*"), dest)])
    await js.add_stream(StreamConfig(name=copy, retention=RetentionPolicy.WORK_QUEUE, sources=[source]))
    last = (await js.stream_info(stream)).state.last_seq
    await wait_for(lambda: _held(js, copy, last), timeout_s=20, what="the copy sourced every job event")
    first = (await js.stream_info(copy)).state.first_seq
    assert await fold_start(js, namespace, PARTITIONS) == 1  # the copy holds everything: nothing folded
    await js.delete_msg(copy, first)  # its oldest folded (a work queue deletes what is acked)
    origin = (await js.get_msg(copy, first + 1)).headers or {}
    assert await fold_start(js, namespace, PARTITIONS) == int(origin["Nats-Stream-Source"].split(" ")[1])
    await js.purge_stream(copy)  # all folded: start after the last it copied
    assert await fold_start(js, namespace, PARTITIONS) == last + 1
    await retire_fold_copy(js, namespace)
    with pytest.raises(NotFoundError):
        await js.stream_info(copy)
    await retire_fold_copy(js, namespace)  # gone already: nothing to do
    assert await fold_start(js, namespace, PARTITIONS) is None  # a new deployment: JOBS' first


async def _held(js: JetStreamContext, copy: str, last: int) -> bool:
    info = await js.stream_info(copy)
    return info.state.messages == last and all((s.lag or 0) == 0 for s in info.sources or [])


async def test_the_partitions_refuse_a_jobs_that_stores_no_slot_tokens(
    js: JetStreamContext, jobs_kv: KeyValue, namespace: Namespace
) -> None:
    """JOBS declared before the slots and not declared again (a dispatcher connected as a NATS user only
    checks the streams): the partitions' filters would match nothing and the fold would wait for ever,
    so the start fails and says what to run."""
    stream = namespace.stream(JOBS)
    config = (await js.stream_info(stream)).config
    await js.update_stream(config.evolve(subject_transform=None))
    with pytest.raises(NotDeclaredError, match="gpurelay nats declare"):
        await fold_start(js, namespace, PARTITIONS)
