"""The local pool's sink: each event straight to JetStream, fenced by its attempt's ``job.dispatched``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from contracts.api.sessions import SessionEntry
from contracts.envelope import EventEnvelope
from contracts.runs import RunRequest
from contracts.streams import FRAMES
from contracts.subjects import Namespace, Subjects
from modal_workers.runtime.sinks.attempt_fence import AttemptSuperseded, publish_in_attempt
from modal_workers.runtime.sinks.protocols import FeedPositions, OnFeedItem, SessionFeed
from services.common.config import nats_servers
from services.common.http.nats_failover import StuckServerWatch
from services.common.nats.connection import client_options
from services.common.nats.publish import publish_event

log = logging.getLogger(__name__)


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
        stored (:mod:`~modal_workers.runtime.sinks.attempt_fence`)."""
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
