"""The runtime's part in a live session: ``ctx.session`` and its feed, for the length of one run.

:func:`live_session` gives a session spec's run a :class:`~modal_workers.runtime.live_session.LiveSession`
whose input is fed by the run's event sink (``sink.open_session_feed``): the local pool's NATS sink
reads FRAMES and TELEMETRY itself, the ingest sink of a Modal worker opens the gateway's feed socket.
Both hand the same items in the same order. The feed stops when the run ends, however it ends.
The session's recording and, for a session with a ``source``, its feeder are
:class:`~modal_workers.runtime.recording.glue.RecordedRun`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from contracts.specs.jobs import SplatSpec, VlmSpec
from modal_workers.runtime.live_session import LiveSession
from modal_workers.runtime.recording.glue import RecordedRun

FEED_START_TIMEOUT_S = 15.0


@contextmanager
def live_session(runtime: Any, ctx: Any) -> Iterator[LiveSession | None]:
    """``ctx.session`` for a session spec (``None`` and nothing to do for a batch job)."""
    spec = ctx.spec
    if not isinstance(spec, SplatSpec | VlmSpec):
        yield None
        return
    live = LiveSession(ctx, spec.params, expects_joints=spec.kind == "splat")
    robot_id = spec.robot_id or ctx.request.job_id

    def positions() -> tuple[int, int]:
        return live.input.last_frame_stream_seq, live.input.last_joints_stream_seq

    recorded = RecordedRun(runtime, ctx, spec, live)
    opened = runtime.sink.open_session_feed(ctx.request, robot_id, live.input.put, positions)
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
