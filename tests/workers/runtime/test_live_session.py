"""``ctx.session.status``: the workload's figures with the input's counts, drops of both sides added up."""

from __future__ import annotations

from typing import Any

from contracts.session_feed import FeedBacklog, FeedFrame
from contracts.specs.session_params import VlmParams
from modal_workers.runtime.live_session import LiveSession


class Host:
    """Records what a live session reports (progress only is used here)."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, str | None, dict[str, Any] | None]] = []

    def store(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not used")

    def emit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not used")

    def progress(self, fraction: float, message: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        self.reports.append((fraction, message, metrics))

    def check_cancelled(self) -> None:
        return None


def frame(seq: int) -> FeedFrame:
    return FeedFrame(seq=seq, ts=1.0 + seq, content_type="image/jpeg", stream_seq=seq)


def test_a_workloads_own_drops_add_to_the_inputs() -> None:
    host = Host()
    live = LiveSession(host, VlmParams(frame_buffer=2), expects_joints=False)
    live.input.put(FeedBacklog(stream_seq=0))  # the feed opened on a session without frames
    live.ready()  # live: the frame buffer bounds what waits (while starting, the start buffer does)
    for seq in (1, 2, 3, 5):  # 3 and 5 overflow the buffer of 2 (2 dropped), 4 never arrives (a gap)
        live.input.put(frame(seq), b"x")
    assert live.input.frames_dropped == 3
    live.status(0.5, "going", frames_dropped=3, chunks=1)
    live.status(None, "no own drops", chunks=2)
    (_, _, first), (fraction, _, second) = host.reports
    assert first is not None
    assert second is not None
    assert (first["frames_dropped"], first["frames_received"], first["chunks"]) == (6, 5, 1)
    assert (second["frames_dropped"], second["chunks"], fraction) == (3, 2, 0.5)
