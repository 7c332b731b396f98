"""What the runtime asks of a sink: :class:`EventSink` (store an event), :class:`CancelWatcher` (see a
job's cancel as it is published) and :class:`SessionFeed` (a live session's input)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from contracts.envelope import EventEnvelope


class EventSink(Protocol):
    """Where events go (NATS, or the gateway's ingest route)."""

    async def send(self, subject_event: str, event: EventEnvelope, *, dispatched_seq: int = 0) -> None:
        """Store ``event`` (``subject_event`` is the last subject token, e.g. ``progress``); with
        ``dispatched_seq``, only while that is its job's latest ``job.dispatched``, else
        :class:`~modal_workers.runtime.sinks.attempt_fence.AttemptSuperseded`."""


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
