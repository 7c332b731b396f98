"""What the dispatcher tells operators (:mod:`services.common.observability.metrics`).

* From its attempts: the queue wait of each attempt it launches (from its ticket's arrival in
  DISPATCH, or its retry time when later, to the launch) and each attempt's run time by outcome.
* From its fold: jobs finished by kind and status, and a finished job's GPU-seconds and cost (the
  record's own figures) — counted only when the fold moved the record, so a redelivered event
  counts nothing twice. (Jobs created are the gateway's count: it writes their first record.)
* Sampled on each scrape: its consumers' lag and the local pool's occupancy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.job_record import JobRecord
from services.common.observability import metrics
from services.dispatcher.running.local_pool import LocalPool
from services.dispatcher.running.tickets import Ticket


def queue_wait_s(ticket: Ticket, msg: Msg, now: float) -> float:
    """How long ``ticket`` waited for its launch at ``now``: since it was stored, or its ``not_before``."""
    try:
        stored = msg.metadata.timestamp.timestamp()
    except (AttributeError, ValueError, TypeError):  # not a JetStream delivery
        stored = now
    return max(0.0, now - max(stored, ticket.not_before))


def observe_launch(ticket: Ticket, msg: Msg) -> None:
    """An attempt of ``ticket`` launches now."""
    metrics.JOB_QUEUE_WAIT.labels(ticket.kind).observe(queue_wait_s(ticket, msg, time.time()))


def observe_attempt(kind: str, outcome: str, ran_s: float) -> None:
    """An attempt that ran ``ran_s`` seconds ended with ``outcome``."""
    metrics.JOB_RUN.labels(kind, outcome).observe(max(0.0, ran_s))


def observe_folded(record: JobRecord) -> None:
    """An event moved ``record``: count it if it just finished, and its cost."""
    if record.terminal:
        metrics.JOBS_FINISHED.labels(record.kind, record.status.value).inc()
        metrics.JOB_GPU_SECONDS.labels(record.kind).inc(record.cost.gpu_seconds)
        metrics.JOB_COST.labels(record.kind).inc(record.cost.estimated_usd)


def sampler(js: JetStreamContext, consumers: list[tuple[str, str]], pool: LocalPool | None) -> metrics.Sampler:
    """The dispatcher's sampled gauges: its consumers' lag, its pool's occupancy."""
    sample_consumers = metrics.consumer_sampler(js, consumers)

    async def sample() -> None:
        if pool is not None:
            occupancy = pool.occupancy()
            for state in ("size", "busy", "idle"):
                metrics.LOCAL_POOL.labels(state).set(occupancy[state])
        await sample_consumers()

    return sample


def start_sampling(
    js: JetStreamContext, consumers: list[tuple[str, str]], pool: LocalPool | None
) -> Callable[[], None]:
    """Sample on every scrape from now on; returns what stops it (and drops those consumers' gauges)."""
    remove = metrics.add_sampler(sampler(js, consumers, pool))

    def stop() -> None:
        remove()
        metrics.forget_consumers(consumers)

    return stop
