"""Where the runtime's events go: :class:`NatsSink` (the local pool) and :class:`IngestSink` (Modal).

What a sink is (``protocols``), the two sinks (``nats_sink``, ``ingest_sink``) and the fence every event of
a local run is published behind (``attempt_fence``); the names are re-exported here.

* :class:`NatsSink` publishes each event straight to JetStream on
  ``jobs.{tenant}.{job}.{event}``, deduplicated by ``Nats-Msg-Id`` = the event id and fenced by its
  attempt's ``job.dispatched`` (``attempt_fence``), and waits for the stream's ack. It also watches the
  job's cancel (:meth:`NatsSink.watch_cancel`: a core NATS subscription to
  ``jobs.{tenant}.{job}.cancel_requested``, no consumer), so a workload can stop early.
* :class:`IngestSink` posts events to the gateway's ingest route
  (``POST /v1/internal/jobs/{id}/events``) with the job-scoped token, retrying transient failures
  (connection errors, 408, 429, 5xx) with exponential backoff. Each event keeps its id across
  resends and the gateway publishes it with ``Nats-Msg-Id`` = that id, so a resent event is
  stored once. 4xx answers other than 408/429 are not retried (the event or token is wrong). Each
  request carries the run's ``traceparent``, so the gateway's span (and what it publishes) stays
  in the job's trace. It
  has no cancel watch: on Modal, ``FunctionCall.cancel()`` stops the container instead.
"""

from modal_workers.runtime.sinks.attempt_fence import AttemptSuperseded
from modal_workers.runtime.sinks.ingest_sink import RETRY_STATUSES, IngestSink
from modal_workers.runtime.sinks.nats_sink import NatsSink
from modal_workers.runtime.sinks.protocols import (
    CancelWatcher,
    EventSink,
    FeedPositions,
    OnFeedItem,
    SessionFeed,
    watch_cancel,
)

__all__ = [
    "RETRY_STATUSES",
    "AttemptSuperseded",
    "CancelWatcher",
    "EventSink",
    "FeedPositions",
    "IngestSink",
    "NatsSink",
    "OnFeedItem",
    "SessionFeed",
    "watch_cancel",
]
