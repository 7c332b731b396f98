"""Prometheus metrics of every service: the one owner of their names, labels and buckets.

Every metric is defined here unregistered; a service calls :func:`register` with its name, which
adds the metrics it updates (:data:`SERVICE_METRICS`) to this process's registry (prometheus_client's
default ``REGISTRY``, once each). ``gpurelay dev`` runs the three services in one process, so its one
``/metrics`` (on the gateway's origin) shows them all; a standalone service shows its own.

Every label is bounded: routes are templates (``/v1/jobs/{job_id}``, never a path), methods a known
set, event types the registry's (:func:`event_type_label`), kinds the job specs', consumers the
durable names of a deployment, webhook endpoints the first ``metrics_max_endpoints`` seen
(:mod:`services.common.observability.metric_labels`). No label ever holds a job, upload or session id.

Gauges read from NATS or the pool (consumer lag, queue depth, pool occupancy) are sampled when
``/metrics`` is read (:func:`add_sampler`; :func:`exposition`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21_600.0, 86_400.0)
SAMPLE_TIMEOUT_S = 2.0
"""The longest a scrape waits for the sampled gauges (a slow NATS leaves them at their last value)."""
SAMPLE_MIN_INTERVAL_S = 1.0
"""Scrapes closer together than this reuse the last sample (bounds the load of eager scrapers)."""

HTTP_DURATION = Histogram(
    "gpurelay_http_request_duration_seconds", "HTTP requests by method, route template and status "
    "(an SSE stream counts its whole life).", ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=None,
)  # fmt: skip
EVENTS_PUBLISHED = Counter(
    "gpurelay_events_published", "Event envelopes this process published, by type.", ["type"], registry=None
)
EVENTS_CONSUMED = Counter(
    "gpurelay_events_consumed", "Messages handled by a consumer (a durable, or sse), by event type.",
    ["consumer", "type"], registry=None,
)  # fmt: skip
CONSUMER_PENDING = Gauge(
    "gpurelay_consumer_pending_messages", "Messages a durable consumer has not been delivered yet (its lag).",
    ["stream", "consumer"], registry=None,
)  # fmt: skip
CONSUMER_ACK_PENDING = Gauge(
    "gpurelay_consumer_ack_pending_messages", "Messages delivered to a durable consumer and not acknowledged.",
    ["stream", "consumer"], registry=None,
)  # fmt: skip
JOBS_CREATED = Counter(
    "gpurelay_jobs_created", "Jobs created (their first record written), by kind.", ["kind"], registry=None
)
JOBS_FINISHED = Counter(
    "gpurelay_jobs_finished", "Jobs that reached a terminal status, by kind and status.", ["kind", "status"],
    registry=None,
)  # fmt: skip
FOLD_REPAIRS = Counter(
    "gpurelay_fold_repairs", "Job records the fold audit, or a refold after a redelivery, found differing from "
    "their stream and rewrote (each one an event the fold missed or folded out of order).", registry=None,
)  # fmt: skip
JOB_QUEUE_WAIT = Histogram(
    "gpurelay_job_queue_wait_seconds", "From an attempt's ticket (or its retry time) to its launch, by kind.",
    ["kind"], buckets=JOB_BUCKETS, registry=None,
)  # fmt: skip
JOB_RUN = Histogram(
    "gpurelay_job_run_seconds", "An attempt from launch to its last event, by kind and outcome.",
    ["kind", "outcome"], buckets=JOB_BUCKETS, registry=None,
)  # fmt: skip
JOB_GPU_SECONDS = Counter(
    "gpurelay_job_gpu_seconds", "GPU-seconds of finished jobs (the record's cost), by kind.", ["kind"], registry=None
)
JOB_COST = Counter(
    "gpurelay_job_cost_usd", "Estimated cost of finished jobs (the record's cost), by kind.", ["kind"], registry=None
)
LOCAL_POOL = Gauge(
    "gpurelay_local_pool_processes", "Local pool processes: size (configured), busy and idle.", ["state"],
    registry=None,
)  # fmt: skip
SSE_CONNECTIONS = Gauge("gpurelay_sse_connections", "SSE streams open in this process.", registry=None)
WEBHOOK_ATTEMPTS = Counter(
    "gpurelay_webhook_attempts", "Webhook delivery attempts by endpoint and result (2xx, 4xx, 5xx, error).",
    ["endpoint", "result"], registry=None,
)  # fmt: skip
WEBHOOK_DELIVERIES = Counter(
    "gpurelay_webhook_deliveries", "Webhook deliveries ended, by endpoint and outcome (delivered, dead_lettered, "
    "refused: the queue was full).", ["endpoint", "outcome"], registry=None,
)  # fmt: skip
WEBHOOK_LATENCY = Histogram(
    "gpurelay_webhook_delivery_latency_seconds", "From a delivery's enqueue to its successful attempt, by endpoint.",
    ["endpoint"], buckets=REQUEST_BUCKETS, registry=None,
)  # fmt: skip
WEBHOOK_QUEUED = Gauge("gpurelay_webhook_queue_messages", "Deliveries waiting in all webhook queues.", registry=None)
SESSION_FRAMES = Counter(
    "gpurelay_session_frames", "Session frames offered to the gateway, by outcome (accepted, rate_limited, ended).",
    ["outcome"], registry=None,
)  # fmt: skip
SESSION_FEED_DROPPED = Counter(
    "gpurelay_session_feed_dropped", "Items (frame, restored, joints) a worker's feed socket dropped, oldest first.",
    ["item"], registry=None,
)  # fmt: skip

_COMMON: tuple[Collector, ...] = (EVENTS_PUBLISHED,)
_CONSUMING: tuple[Collector, ...] = (EVENTS_CONSUMED, CONSUMER_PENDING, CONSUMER_ACK_PENDING)
SERVICE_METRICS: dict[str, tuple[Collector, ...]] = {
    "gateway": (*_COMMON, HTTP_DURATION, JOBS_CREATED, SESSION_FRAMES, SESSION_FEED_DROPPED),
    "notifier": (*_COMMON, *_CONSUMING, HTTP_DURATION, SSE_CONNECTIONS, WEBHOOK_ATTEMPTS, WEBHOOK_DELIVERIES,
                 WEBHOOK_LATENCY, WEBHOOK_QUEUED),
    "dispatcher": (*_COMMON, *_CONSUMING, FOLD_REPAIRS, JOBS_FINISHED, JOB_QUEUE_WAIT, JOB_RUN, JOB_GPU_SECONDS,
                   JOB_COST, LOCAL_POOL),
}  # fmt: skip
"""What each service updates, so what its ``/metrics`` shows."""
_registered: set[int] = set()

Sampler = Callable[[], Awaitable[None]]
"""Refreshes some gauges from their source (a NATS consumer's info, the pool)."""
_samplers: list[tuple[Sampler, asyncio.AbstractEventLoop]] = []
_last_sample = float("-inf")


def register(service: str) -> None:
    """Add ``service``'s metrics to this process's registry (those already there stay once)."""
    for metric in SERVICE_METRICS[service]:
        if id(metric) not in _registered:
            REGISTRY.register(metric)
            _registered.add(id(metric))


def add_sampler(sampler: Sampler) -> Callable[[], None]:
    """Run ``sampler`` before each exposition, on the running loop (its NATS connection's); returns its removal."""
    global _last_sample
    entry = (sampler, asyncio.get_running_loop())
    _samplers.append(entry)
    _last_sample = float("-inf")  # the next scrape samples it

    def remove() -> None:
        if entry in _samplers:
            _samplers.remove(entry)

    return remove


async def _on_its_loop(sampler: Sampler, loop: asyncio.AbstractEventLoop) -> None:
    """Run ``sampler`` on ``loop`` (a server in another thread may scrape: tests, embedding)."""
    if loop is asyncio.get_running_loop():
        await sampler()
    elif loop.is_closed():
        raise RuntimeError("the sampler's event loop is closed")
    else:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_as_coroutine(sampler), loop))


async def _as_coroutine(sampler: Sampler) -> None:
    await sampler()


async def sample() -> None:
    """Run every sampler at once, within :data:`SAMPLE_TIMEOUT_S`; a failed one is logged and skipped."""
    global _last_sample
    now = time.monotonic()
    if not _samplers or now - _last_sample < SAMPLE_MIN_INTERVAL_S:
        return
    _last_sample = now
    results = await asyncio.gather(
        *(asyncio.wait_for(_on_its_loop(*entry), SAMPLE_TIMEOUT_S) for entry in list(_samplers)),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            log.warning("a metrics sample failed: %s", type(result).__name__)


async def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format (sampled gauges refreshed first) and its content type."""
    await sample()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def consumer_sampler(js: JetStreamContext, consumers: list[tuple[str, str]]) -> Sampler:
    """A sampler of the lag and unacknowledged count of each ``(stream, durable)``."""

    async def sample_consumers() -> None:
        for stream, durable in consumers:
            try:
                info = await js.consumer_info(stream, durable)
            except NotFoundError:
                continue
            CONSUMER_PENDING.labels(stream, durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)

    return sample_consumers


def forget_consumers(consumers: list[tuple[str, str]]) -> None:
    """Drop the gauges of consumers this process no longer samples (a stopped service)."""
    for stream, durable in consumers:
        for gauge in (CONSUMER_PENDING, CONSUMER_ACK_PENDING):
            with contextlib.suppress(KeyError):
                gauge.remove(stream, durable)
