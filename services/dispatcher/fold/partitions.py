"""The partitioned fold: JOBS' job events copied into N partitions by a hash of the job id.

Stream ``JOBS_FOLD`` (the dispatcher's own, declared here at start) sources ``jobs.*.*.*`` from
JOBS with a subject transform into ``fold.{partition}.{tenant}.{job}.{event}``, where
``partition = {{partition(N, tenant, job)}}``: a hash of the tenant and job id, computed by the
server. Every event of a job lands in the same partition, in JOBS order. Each partition has one
durable pull consumer ``dispatcher-fold-{p}``, pinned to one replica at a time
(:mod:`~services.dispatcher.fold.serial`): the holder folds a batch, acks it and lets go, so each
partition has a single writer of its jobs' records folding them in stream order (KV equals
:func:`~services.dispatcher.fold.records.fold` of the stream), while the N partitions fold in parallel,
across replicas. The stream is a work queue: a folded (acked)
event leaves it, so it holds only the fold's backlog.

``fold_partitions = 0`` keeps the serial fold: one consumer ``dispatcher-jobs`` on JOBS.
Changing N re-maps jobs to partitions: change it only while no events wait (the fold drained).
"""

from __future__ import annotations

import functools
import logging

from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig, StreamSource, SubjectTransform
from nats.js.errors import NotFoundError

from contracts import streams
from contracts.subjects import Namespace
from services.common.nats.publish import placement_pending, until_answered

log = logging.getLogger(__name__)
FOLD_STREAM = streams.JOBS_FOLD
SERIAL_DURABLE = "dispatcher-jobs"
"""The serial fold's consumer on JOBS (``fold_partitions = 0``), and where an upgrade starts from."""


def fold_durable(partition: int) -> str:
    """The durable consumer of one partition."""
    return f"dispatcher-fold-{partition}"


def partition_subject(ns: Namespace, partition: int) -> str:
    """The filter of one partition's events."""
    return ns.subject(f"fold.{partition}.>")


def _transform(ns: Namespace, partitions: int) -> SubjectTransform:
    dest = f"fold.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}"
    return SubjectTransform(src=ns.subject("jobs.*.*.*"), dest=ns.subject(dest))


async def declare_fold_stream(js: JetStreamContext, ns: Namespace, partitions: int, replicas: int = 1) -> str:
    """Make (or re-map) ``JOBS_FOLD`` with ``partitions`` partitions; its name.

    A new one starts after what the serial fold already folded (its consumer's ack floor), or at
    JOBS' start when there was none (the fold is idempotent: folding an event again changes nothing).
    Tried again while NATS is slow or away (a dispatcher starting beside a stalled server): every step
    may be, as a stream made by a request whose answer was lost is found mapped the next time. So is a
    replicated one a forming cluster cannot place yet (:func:`placement_pending`).
    """
    declare = functools.partial(_declare_fold_stream, js, ns, partitions, replicas)
    return await until_answered(declare, "declare the fold's stream", also_retried=placement_pending)


async def _declare_fold_stream(js: JetStreamContext, ns: Namespace, partitions: int, replicas: int) -> str:
    name, transform = ns.stream(FOLD_STREAM), _transform(ns, partitions)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        info = None
    if info is not None:
        sources = info.config.sources or []
        if sources and sources[0].subject_transforms and sources[0].subject_transforms[0].dest == transform.dest:
            return name
        log.warning("the fold's partitions change to %d: jobs move between partitions", partitions)
        source = StreamSource(name=ns.stream(streams.JOBS), subject_transforms=[transform])
        if sources:
            source.opt_start_seq = sources[0].opt_start_seq
        await js.update_stream(info.config.evolve(sources=[source]))
        return name
    source = StreamSource(name=ns.stream(streams.JOBS), subject_transforms=[transform])
    source.opt_start_seq = await _serial_floor(js, ns)
    config = StreamConfig(
        name=name,
        description="JOBS' job events by fold partition (a hash of the job id); the fold's work queue.",
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
        sources=[source],
    )
    await js.add_stream(config)
    return name


async def _serial_floor(js: JetStreamContext, ns: Namespace) -> int | None:
    """The first JOBS sequence the serial fold has not acknowledged; ``None``: there is no serial fold."""
    try:
        info = await js.consumer_info(ns.stream(streams.JOBS), SERIAL_DURABLE)
    except NotFoundError:
        return None
    floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
    return floor + 1 if floor else None


async def fold_settled(js: JetStreamContext, ns: Namespace, partitions: int) -> bool:
    """Whether the fold has folded everything stored in JOBS so far (tests and benchmarks). Not before
    ``JOBS_FOLD``'s source has been heard from: until then its lag reads 0 whatever JOBS holds (a source
    whose first setup failed is tried again only 10 s later, so "settled" came before anything was
    copied, and a test then waited 10 s for its events)."""
    if partitions == 0:
        info = await js.consumer_info(ns.stream(streams.JOBS), SERIAL_DURABLE)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)
    stream = await js.stream_info(ns.stream(FOLD_STREAM))
    sources = stream.sources or []
    heard = bool(sources) and all(source.active is not None and source.active >= 0 for source in sources)
    lag = sum(source.lag or 0 for source in sources)
    return heard and stream.state.messages == 0 and lag == 0


async def fold_pending(js: JetStreamContext, ns: Namespace, partitions: int) -> int:
    """How many events stored in JOBS the fold has yet to fold (benchmarks): unacknowledged ones."""
    if partitions == 0:
        try:
            info = await js.consumer_info(ns.stream(streams.JOBS), SERIAL_DURABLE)
        except NotFoundError:  # not made yet: everything is left
            return int((await js.stream_info(ns.stream(streams.JOBS))).state.messages)
        return int((info.num_pending or 0) + (info.num_ack_pending or 0))
    stream = await js.stream_info(ns.stream(FOLD_STREAM))
    return int(stream.state.messages + sum(source.lag or 0 for source in stream.sources or []))
