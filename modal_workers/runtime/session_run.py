"""The runtime's part in a live session: ``ctx.session`` and its feed, for the length of one run.

:func:`live_session` gives a session spec's run a :class:`~modal_workers.runtime.live_session.LiveSession`
whose input is fed by the run's event sink (``sink.open_session_feed``): the local pool's NATS sink
reads FRAMES and TELEMETRY itself, the ingest sink of a Modal worker opens the gateway's feed socket.
Both hand the same items in the same order. The feed stops when the run ends, however it ends.

The session is ``starting`` until the workload is ready (``ctx.session.ready()``, or its first poll):
then ``session.ready`` goes out with the load time, preceded on a later attempt by ``session.resumed``.
A later attempt (its worker's predecessor was lost) restores the newest resume point first
(:mod:`modal_workers.runtime.session_resume`); a workload that cannot resume fails it with ``worker_lost``.
The session's recording and, for a session with a ``source``, its feeder are
:class:`~modal_workers.runtime.recording.glue.RecordedRun`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from contracts.envelope import utc_now
from contracts.events import sessions as se
from contracts.events.registry import EventType
from contracts.specs.jobs import SplatSpec, VlmSpec
from modal_workers.runtime.errors import PermanentError
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.recording.glue import RecordedRun
from modal_workers.runtime.session_resume import load_resume_point

FEED_START_TIMEOUT_S = 15.0


@contextmanager
def live_session(runtime: Any, ctx: Any, resumable: bool = False) -> Iterator[LiveSession | None]:
    """``ctx.session`` for a session spec (``None`` and nothing to do for a batch job); ``resumable``:
    whether the workload resumes a session after a lost worker."""
    spec = ctx.spec
    if not isinstance(spec, SplatSpec | VlmSpec):
        yield None
        return
    request = ctx.request
    live = LiveSession(
        ctx, spec.params, expects_joints=spec.kind == "splat", attempt=request.attempt, resumable=resumable
    )
    if request.attempt > 1:
        resume(ctx, live)
    live.on_ready = lambda live, held, load_s: announce(ctx, live, held, load_s)
    robot_id = spec.robot_id or request.job_id

    recorded = RecordedRun(runtime, ctx, spec, live)
    opened = runtime.sink.open_session_feed(request, robot_id, live.input.put, live.input.feed_position)
    feed = runtime.call(opened, FEED_START_TIMEOUT_S)
    ctx.session = live
    recorded.start()
    completed = False
    try:
        yield live
        completed = True
    finally:
        ctx.session = None
        recorded.finish(completed)
        runtime.call(feed.stop(), FEED_START_TIMEOUT_S)


def resume(ctx: Any, live: LiveSession) -> None:
    """A later attempt: restore the newest resume point (a workload that cannot resume fails the session)."""
    if not live.resumable:
        raise PermanentError("worker_lost", "the session's worker was lost and its workload cannot resume it")
    point, data = load_resume_point(ctx)
    live.restore(point)
    live.resume_snapshot = data


def announce(ctx: Any, live: LiveSession, held: int, load_s: float) -> None:
    """``session.resumed`` (a later attempt) and ``session.ready``, once the workload is ready."""
    if live.attempt > 1:
        point, after = live.resume_point, ctx.request.resumes_after
        lost = live.input.frames_dropped - (point.frames_dropped if point else 0)
        gap_s = (utc_now() - after).total_seconds() if after is not None else load_s
        resumed = se.SessionResumedPayload(
            attempt=live.attempt, from_seq=point.seq if point else 0, frames_replayed=held,
            frames_lost=max(0, lost), gap_s=round(max(0.0, gap_s), 3),
        )  # fmt: skip
        ctx.emit(EventType.SESSION_RESUMED, resumed, "resumed")
    ready = se.SessionReadyPayload(
        attempt=live.attempt, load_s=round(load_s, 3), frames_held=held, resumable=live.resumable
    )
    ctx.emit(EventType.SESSION_READY, ready, "ready")
