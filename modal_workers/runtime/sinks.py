"""Where the runtime's events go: :class:`NatsSink` (the local pool) and :class:`IngestSink` (Modal).

* :class:`NatsSink` publishes each event straight to JetStream on
  ``jobs.{tenant}.{job}.{event}``, deduplicated by ``Nats-Msg-Id`` = the event id, and waits for
  the stream's ack. It also watches the job's cancel (:meth:`NatsSink.watch_cancel`: a core NATS
  subscription to ``jobs.{tenant}.{job}.cancel_requested``, no consumer), so a workload can stop
  early.
* :class:`IngestSink` posts events to the gateway's ingest route
  (``POST /v1/internal/jobs/{id}/events``) with the job-scoped token, retrying transient failures
  (connection errors, 408, 429, 5xx) with exponential backoff. Each event keeps its id across
  resends and the gateway publishes it with ``Nats-Msg-Id`` = that id, so a resent event is
  stored once. 4xx answers other than 408/429 are not retried (the event or token is wrong). Each
  request carries the run's ``traceparent``, so the gateway's span (and what it publishes) stays
  in the job's trace. It
  has no cancel watch: on Modal, ``FunctionCall.cancel()`` stops the container instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from contracts.api.sessions import SessionEntry
from contracts.envelope import EventEnvelope
from contracts.runs import RunRequest
from contracts.streams import FRAMES
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.attempt_fence import AttemptSuperseded, publish_in_attempt
from services.common.config import nats_servers
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.connection import client_options
from services.common.nats.publish import publish_event
from services.common.observability import tracing

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class EventSink(Protocol):
    """Where events go (NATS, or the gateway's ingest route)."""

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        """Store ``event`` (``subject_event`` is the last subject token, e.g. ``progress``); with
        ``dispatched_seq``, only while that is its job's latest ``job.dispatched``, else
        :class:`~modal_workers.runtime.attempt_fence.AttemptSuperseded`."""


@runtime_checkable
class CancelWatcher(Protocol):
    """A sink that can see a job's cancel request as it is published."""

    async def watch_cancel(self, tenant: str, job_id: str, on_cancel: Callable[[], None]) -> Any:
        """Call ``on_cancel`` on the job's ``job.cancel_requested``; a subscription to ``unsubscribe()``
        (in force once the sink's next event is stored: the runtime sends ``job.started`` right after)."""


class SessionFeed(Protocol):
    """A running session feed (:class:`~services.common.session_feed.NatsSessionFeed` or
    :class:`~modal_workers.runtime.session_feeds.GatewayFeed`)."""

    async def stop(self) -> None:
        """Stop reading."""


OnFeedItem = Callable[[Any, bytes | None], None]
"""Takes each feed item (frame, joints or control) with a frame's bytes, in order, on the loop."""
FeedPositions = Callable[[], tuple[int, int, int]]
"""Where a feed (re)opens: after these FRAMES and TELEMETRY sequences, and the FRAMES sequence up to which
its frames are restored ones (0: none; :meth:`~modal_workers.runtime.session_input.SessionInput.feed_position`)."""


async def watch_cancel(sink: EventSink, tenant: str, job_id: str, on_cancel: Callable[[], None]) -> Any:
    """The sink's cancel watch of the job (a subscription), or ``None`` when the sink has none."""
    if not isinstance(sink, CancelWatcher):
        return None
    return await sink.watch_cancel(tenant, job_id, on_cancel)


class NatsSink:
    """Events straight to JetStream, deduplicated by ``Nats-Msg-Id``; the job's cancel watched."""

    def __init__(self, nats_url: str, namespace: str = "") -> None:
        self.nats_url, self.namespace = nats_url, namespace
        self.subjects = Subjects(Namespace(namespace))
        self._nc: Any = None
        self.watch: StuckServerWatch | None = None
        """Moves the connection off a server cut off from its cluster, told of each publish that failed."""

    @classmethod
    async def connect(cls, nats_url: str, namespace: str = "", **options: Any) -> NatsSink:
        """A connected sink; ``options`` go to nats-py (the workers' user, inbox prefix and TLS)."""
        import nats

        sink = cls(nats_url, namespace)
        sink._nc = await nats.connect(nats_servers(nats_url), **(client_options("gpurelay-worker") | options))
        sink.watch = StuckServerWatch(sink._nc, sink.subjects.ns.stream(FRAMES))  # a stream workers may read
        return sink

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        """Publish and wait for the stream's ack. With ``dispatched_seq`` (the attempt's ``job.dispatched``),
        stored only while that is still the job's latest ``job.dispatched``: once the job was dispatched
        again (this host was cut off, another replica retried it), :class:`AttemptSuperseded` and nothing
        stored (:mod:`~modal_workers.runtime.attempt_fence`)."""
        assert event.job_id is not None
        subject = self.subjects.job_event(event.tenant, event.job_id, subject_event)
        js, told = self._nc.jetstream(), self.watch.failed if self.watch is not None else None
        if not dispatched_seq:
            await publish_event(js, subject, event, unavailable=told)
            return
        try:
            await publish_in_attempt(js, self.subjects, subject, event, dispatched_seq, told)
        except AttemptSuperseded:
            log.warning("%s of %s attempt %s not stored: the job was dispatched again since (superseded)",
                        event.type, event.job_id, event.attempt)  # fmt: skip
            raise

    async def watch_cancel(self, tenant: str, job_id: str, on_cancel: Callable[[], None]) -> Any:
        """Call ``on_cancel`` when the job's ``job.cancel_requested`` is published; the subscription.
        Subscribing only queues the SUB: the watch is in force once the next event :meth:`send`
        sends is stored (the server handles a connection's messages in order)."""

        async def on_msg(msg: Any) -> None:
            on_cancel()

        subject = self.subjects.job_event(tenant, job_id, "cancel_requested")
        return await self._nc.subscribe(subject, cb=on_msg)

    async def open_session_feed(
        self, request: RunRequest, robot_id: str, on_item: OnFeedItem, positions: FeedPositions
    ) -> SessionFeed:
        """The session's frames and control (FRAMES) and its robot's joints (TELEMETRY), read straight
        from JetStream after ``positions()`` (a resumed session's; ordered consumers then resume by themselves)."""
        from services.common.session_feed import FeedStart, NatsSessionFeed

        after_frames, after_joints, _ = positions()
        start = FeedStart(after_frames, after_joints, joints_since=request.created_at)
        ns = self.subjects.ns
        feed = NatsSessionFeed(self._nc.jetstream(), ns, request.tenant, request.job_id, robot_id, on_item, start)
        await feed.start()
        return feed

    async def open_session_source(self, request: RunRequest, entry: SessionEntry) -> Any:
        """A publisher of a sourced session's input, straight to JetStream
        (:class:`~services.common.session_publish.NatsSourcePublisher`)."""
        from services.common.session_publish import NatsSourcePublisher

        return await NatsSourcePublisher.open(self._nc.jetstream(), self.subjects.ns, entry, f"worker/{request.kind}")

    async def close(self) -> None:
        """Flush and close the connection (closed as it is while it reconnects: nothing can be flushed)."""
        import nats.errors

        if self.watch is not None:
            await self.watch.stop()
        if self._nc is not None:
            try:
                await self._nc.drain()
            except nats.errors.ConnectionReconnectingError:  # drain refuses; close still stops the reconnects
                await self._nc.close()


class IngestSink:
    """Events to the gateway's ingest route with a job-scoped token, retried with backoff."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        attempts: int = 8,
        backoff_s: float = 0.2,
        backoff_max_s: float = 5.0,
        transport: Any = None,
    ) -> None:
        import httpx

        self.url, self.attempts, self.backoff_s, self.backoff_max_s = url, attempts, backoff_s, backoff_max_s
        self._token = token
        headers = {"Authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(headers=headers, timeout=30, transport=transport)

    @classmethod
    async def create(cls, url: str, token: str, **options: Any) -> IngestSink:
        """A sink posting to ``url`` (the factory the runtime calls on its loop)."""
        return cls(url, token, **options)

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        """POST one event until the gateway accepts it (202); raises after the last attempt. No fence
        (``dispatched_seq`` is 0 on Modal: its job.dispatched is published after the spawn)."""
        import httpx

        body = {"events": [event.model_dump(mode="json", exclude_none=True)]}
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._http.post(self.url, json=body, headers=tracing.inject({}))
            except httpx.TransportError:
                if attempt == self.attempts:
                    raise
            else:
                if response.status_code < 400:
                    return
                if response.status_code not in RETRY_STATUSES or attempt == self.attempts:
                    response.raise_for_status()
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def open_session_feed(
        self, request: RunRequest, robot_id: str, on_item: OnFeedItem, positions: FeedPositions
    ) -> SessionFeed:
        """The session's feed over the gateway's feed socket (the gateway knows the robot and the start);
        a reconnect resumes after ``positions()`` (the last frame and joint stream sequences seen, and up to
        where its frames are a resumed session's restored memory)."""
        from modal_workers.runtime.session_feeds import GatewayFeed, feed_url

        feed = GatewayFeed(feed_url(self.url, request.job_id), self._token, on_item, positions)
        await feed.start()
        return feed

    async def open_session_source(self, request: RunRequest, entry: SessionEntry) -> Any:
        """A publisher of a sourced session's input through the gateway's internal source routes
        (:class:`~modal_workers.runtime.recording.gateway_source.GatewaySourcePublisher`)."""
        from modal_workers.runtime.recording.gateway_source import GatewaySourcePublisher

        return GatewaySourcePublisher(self._http, self.url, request.job_id)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
