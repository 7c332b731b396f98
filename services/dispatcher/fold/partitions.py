"""The partitioned fold: JOBS' job events read in N partitions, each a set of JOBS' slots.

JOBS stores each job event with a slot token, ``jobs.{tenant}.{job}.{event}.{slot}``, the slot a hash
of the tenant and job id that the server computes (:data:`~contracts.subjects.JOB_SLOTS`, a stream
``subject_transform``). Partition ``p`` of N reads the slots ``s`` with ``s % N == p``: every event of
a job lands in the same partition, in JOBS order. Each partition has one durable pull consumer
``dispatcher-fold-{p}`` on JOBS itself, pinned to one replica at a time
(:mod:`~services.dispatcher.fold.partition`): the holder folds a batch, acks it and lets go, so each
partition has a single writer of its jobs' records folding them in stream order (KV equals
:func:`~services.dispatcher.fold.records.fold` of the stream), while the N partitions fold in parallel,
across replicas. Reading JOBS itself, not a copy of it, stores and syncs each event once (the copy,
``JOBS_FOLD``, cost more than half of nats-server's time per event: ``bench/fold_feed.py``).

JOBS keeps 30 days, so a partition's consumer made anew never starts at its first message: it starts
at the floor :func:`fold_start` finds (what was folded already), and the fold is idempotent for what
comes again. ``fold_partitions = 0`` keeps the serial fold: one consumer ``dispatcher-jobs`` on JOBS.
Changing N re-maps slots to partitions: change it with every replica stopped (two N at once fold a job's
events in two partitions), ideally while no events wait (the fold drained). The first replica of the new
N deletes the consumers of the partitions it does not have (:func:`retire_other_partitions`).
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo
from nats.js.errors import NotFoundError

from contracts import streams
from contracts.subjects import JOB_SLOTS, Namespace, Subjects, job_slot_transform
from services.common.nats.declarations import NotDeclaredError
from services.dispatcher.fold.pinned.consumer import jetstream_api

log = logging.getLogger(__name__)
RETIRED_STREAM = streams.JOBS_FOLD
"""The copy of JOBS the partitions read before (sourced, by partition): an upgrade starts after what it
held and deletes it (:func:`retire_fold_copy`)."""
SERIAL_DURABLE = "dispatcher-jobs"
"""The serial fold's consumer on JOBS (``fold_partitions = 0``), and where an upgrade starts from."""
SOURCE_HEADER = "Nats-Stream-Source"
"""What a sourced message carries: its origin stream, then its sequence there."""


def fold_durable(partition: int) -> str:
    """The durable consumer of one partition."""
    return f"dispatcher-fold-{partition}"


def partition_slots(partition: int, partitions: int) -> list[int]:
    """The JOBS slots partition ``partition`` of ``partitions`` reads."""
    return [slot for slot in range(JOB_SLOTS) if slot % partitions == partition]


def partition_filters(ns: Namespace, partition: int, partitions: int) -> list[str]:
    """The filter subjects of one partition's consumer: its slots of JOBS."""
    subjects = Subjects(ns)
    return [subjects.job_slot(slot) for slot in partition_slots(partition, partitions)]


async def partitions_made(nc: NatsClient, ns: Namespace) -> set[int]:
    """The partitions, of any N, whose consumer exists on JOBS: one listing of its consumers' names (in pages
    of the server's limit, 1,024), where reading or deleting each of the 32 there may be took 32 requests."""
    stream, offset = ns.stream(streams.JOBS), 0
    names: set[str] = set()
    while True:
        page = await jetstream_api(nc, f"CONSUMER.NAMES.{stream}", {"offset": offset})
        listed = page.get("consumers") or []
        names.update(listed)
        offset += len(listed)
        if not listed or offset >= int(page.get("total") or 0):
            break
    return {p for p in range(JOB_SLOTS) if fold_durable(p) in names}


async def fold_start(js: JetStreamContext, ns: Namespace, partitions: int, made: set[int] | None = None) -> int | None:
    """The first JOBS sequence a partition consumer made now starts at; ``None``: JOBS' first.

    Made again (its configuration changed, or found gone), the lowest ack floor of the partitions that
    exist: nothing below it waits to be folded. The first time, after what the serial fold acknowledged
    or the retired copy held (an upgrade), else at JOBS' first (a new deployment). Raises
    :class:`~services.common.nats.declarations.NotDeclaredError` when JOBS does not store slot tokens
    (a service connected as a NATS user only checks the streams, and the partitions' filters would
    match nothing: the fold would wait for ever). ``made``: the partitions whose consumer exists
    (:func:`partitions_made`), else each of the 32 is asked for."""
    jobs = await js.stream_info(ns.stream(streams.JOBS))  # before the copy's lag is read (_copy_floor)
    _check_slots(jobs, ns)
    floors = []
    for partition in sorted(made) if made is not None else range(JOB_SLOTS):  # a changed N's too
        try:
            info = await js.consumer_info(ns.stream(streams.JOBS), fold_durable(partition))
        except NotFoundError:
            continue
        floors.append(acked_to(info) + 1)
    if floors:
        return min(floors)
    return await _serial_floor(js, ns) or await _copy_floor(js, ns, jobs.state.last_seq)


def acked_to(info: ConsumerInfo) -> int:
    """The last stream sequence below which a consumer has every message acknowledged (0: none)."""
    return info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0


def _check_slots(jobs: StreamInfo, ns: Namespace) -> None:
    transform = jobs.config.subject_transform
    if transform is None or (transform.src, transform.dest) != job_slot_transform(ns):
        raise NotDeclaredError(
            "JOBS does not store its job events' slot tokens, which the fold's partitions read: run "
            "`gpurelay nats declare` as the operator first (docs/operations.md, Upgrades)"
        )


async def _serial_floor(js: JetStreamContext, ns: Namespace) -> int | None:
    """The first JOBS sequence the serial fold has not acknowledged; ``None``: there is no serial fold."""
    try:
        info = await js.consumer_info(ns.stream(streams.JOBS), SERIAL_DURABLE)
    except NotFoundError:
        return None
    floor = acked_to(info)
    return floor + 1 if floor else None


async def _copy_floor(js: JetStreamContext, ns: Namespace, last: int) -> int | None:
    """The first JOBS sequence the retired copy had not folded: its oldest message's origin, else the
    first it had not copied yet (JOBS' ``last``, read before the copy, less its lag); ``None``: there is
    no copy."""
    try:
        copy = await js.stream_info(ns.stream(RETIRED_STREAM))
    except NotFoundError:
        return None
    lag = sum(source.lag or 0 for source in copy.sources or [])
    start = max(1, last - lag + 1)
    if copy.state.messages:
        first = await js.get_msg(ns.stream(RETIRED_STREAM), copy.state.first_seq)
        origin = (first.headers or {}).get(SOURCE_HEADER, "").split(" ")
        if len(origin) > 1 and origin[1].isdigit():
            start = min(start, int(origin[1]))
        else:  # not as nats-server writes it: fold all of JOBS again rather than skip an event
            return None
    log.warning("the fold reads JOBS from sequence %d on (the copy JOBS_FOLD retires)", start)
    return start


async def retire_fold_copy(js: JetStreamContext, ns: Namespace) -> None:
    """Delete the copy the partitions read before, once their consumers on JOBS exist."""
    try:
        await js.delete_stream(ns.stream(RETIRED_STREAM))
    except NotFoundError:
        return
    log.warning("the fold's copy of JOBS, JOBS_FOLD, is deleted: the partitions read JOBS")


async def retire_other_partitions(js: JetStreamContext, ns: Namespace, partitions: int, made: set[int]) -> list[int]:
    """Delete the consumers of the partitions from ``partitions`` on (all with the serial fold) among ``made``
    (:func:`partitions_made`, listed at the start: a replica makes none from N on): a larger N's, left when
    N shrank. Called once this N's consumers exist, so :func:`fold_start` counted their floors. Kept, they
    held their floors: an N grown again took them, and the partitions made again their lowest, folding
    again all that came meanwhile. The partitions deleted."""
    retired = []
    for partition in sorted(p for p in made if p >= partitions):
        try:
            await js.delete_consumer(ns.stream(streams.JOBS), fold_durable(partition))
        except NotFoundError:
            continue
        retired.append(partition)
    if retired:
        log.warning("the fold's consumers of partitions %s are deleted: fold_partitions is %d", retired, partitions)
    return retired


async def fold_settled(js: JetStreamContext, ns: Namespace, partitions: int) -> bool:
    """Whether the fold has folded everything stored in JOBS so far (tests and benchmarks)."""
    return await fold_pending(js, ns, partitions) == 0


async def fold_pending(js: JetStreamContext, ns: Namespace, partitions: int) -> int:
    """How many events stored in JOBS the fold has yet to fold (tests and benchmarks): those its
    consumers have not delivered or not seen acknowledged; before a consumer exists, all of JOBS."""
    durables = [SERIAL_DURABLE] if partitions == 0 else [fold_durable(p) for p in range(partitions)]
    pending = 0
    for durable in durables:
        try:
            info = await js.consumer_info(ns.stream(streams.JOBS), durable)
        except NotFoundError:  # not made yet: everything is left
            return int((await js.stream_info(ns.stream(streams.JOBS))).state.messages)
        pending += (info.num_pending or 0) + (info.num_ack_pending or 0)
    return pending
