"""lap_compare through the runtime with a real NATS sink and local storage, against ground truth."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nats.js import JetStreamContext

from contracts.streams import Declarations
from contracts.subjects import Namespace
from modal_workers.lap_compare import workload as lap_compare
from modal_workers.media.video import sampled_count
from modal_workers.media.video_out import WEBM_ENV, WEBM_FPS_ENV, WEBM_WIDTH_ENV
from modal_workers.runtime.worker_runtime import WorkerRuntime
from services.common.nats.server.embedded import EmbeddedNats
from tests.support.dispatcher import EventLog
from tests.support.lap import (
    frame_count,
    grouped,
    lap_positions,
    lap_request,
    lap_speeds,
    nats_runtime,
    run_in_thread,
    scrolling_video,
    square_video,
    upload,
    video_size,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def runtime(nats_server: EmbeddedNats, namespace: Namespace, declared: Declarations, tmp_path: Path) -> object:
    """A runtime publishing to this test's JOBS stream, storage under the test's tmp dir."""
    rt = nats_runtime(nats_server.url, namespace.name, tmp_path / "blobs")
    yield rt
    rt.close()


@pytest.fixture
async def log(js: JetStreamContext, declared: Declarations, namespace: Namespace) -> object:
    """Every job event of this test, as stored."""
    event_log = await EventLog().start(js, namespace)
    yield event_log
    await event_log.stop()


def _metrics(rt: WorkerRuntime, key: str) -> dict[str, Any]:
    assert rt.storage is not None
    loaded: dict[str, Any] = json.loads(rt.call(rt.storage.read_all(key)))
    return loaded


@pytest.mark.parametrize(
    ("method", "fps_sample", "step"),
    [("farneback", None, 4.0), ("dis", 12.0, 8.0)],
)
async def test_one_lap_events_artifacts_and_metrics(
    runtime: WorkerRuntime, log: EventLog, tmp_path: Path, method: str, fps_sample: float | None, step: float
) -> None:
    video = scrolling_video(tmp_path / "lap.mp4", [4.0 * k for k in range(48)])
    params = {"flow_method": method, "fps_sample": fps_sample}
    request = lap_request({"video": upload(runtime, video)}, params)
    outcome = await run_in_thread(runtime, lap_compare.run, request)
    assert outcome.status == "succeeded", outcome.error
    await log.wait(lambda: log.ended(request.job_id) is not None)
    types = [t for t in log.types(request.job_id) if t not in ("job.log", "job.heartbeat")]
    progress = types.count("job.progress")
    assert types == ["job.started", *["job.progress"] * progress, *["job.artifact"] * 4, "job.succeeded"]
    assert progress >= 2  # the first and the last always go; a fast job has few in between
    artifacts = grouped(log.events[request.job_id])["job.artifact"]
    assert [a.data["name"] for a in artifacts] == ["overlay.mp4", "overlay.webm", "metrics.json", "manifest.json"]
    assert runtime.storage is not None
    types = ["video/mp4", "video/webm", "application/json", "application/json"]
    for event, content_type in zip(artifacts, types, strict=True):
        info = runtime.call(runtime.storage.head(event.data["key"]))
        assert info is not None
        assert info.size == event.data["size"] > 0
        assert event.data["content_type"] == content_type
        assert len(event.data["sha256"]) == 64
        assert event.data["key"] == f"results/acme/{request.job_id}/{event.data['name']}"
    expected = sampled_count(48, 24.0, fps_sample)
    overlay = tmp_path / "overlay.mp4"
    overlay.write_bytes(runtime.call(runtime.storage.read_all(artifacts[0].data["key"])))
    assert frame_count(overlay) == expected == outcome.result["frames"]
    preview = tmp_path / "overlay.webm"  # the same video, VP8, for browsers: every 2nd frame at 24 fps
    preview.write_bytes(runtime.call(runtime.storage.read_all(artifacts[1].data["key"])))
    assert preview.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a Matroska/WebM file
    every = 2 if fps_sample is None else 1  # at most 12 frames/s (GPURELAY_VIDEO_WEBM_FPS)
    assert frame_count(preview) == len(range(0, expected, every))
    assert video_size(preview) == (160, 120)  # scrolling_video's size, under the 320 px bound
    metrics = _metrics(runtime, artifacts[2].data["key"])
    frames = metrics["video"]["frames"][1:]
    direction = float(np.median([f["direction_rad"] for f in frames]))
    magnitude = float(np.median([f["mean_magnitude"] for f in frames]))
    assert abs(direction) < math.radians(5)
    assert abs(magnitude - step) <= 0.15 * step, magnitude
    manifest = _metrics(runtime, artifacts[3].data["key"])
    assert [a["name"] for a in manifest["artifacts"]] == ["overlay.mp4", "overlay.webm", "metrics.json"]
    assert manifest["parameters"]["flow_method"] == method
    assert {"opencv", "numpy"} <= set(manifest["versions"])


async def test_the_webm_preview_is_downscaled_and_can_be_turned_off(
    runtime: WorkerRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = scrolling_video(tmp_path / "lap.mp4", [4.0 * k for k in range(12)], size=(320, 240))
    monkeypatch.setenv(WEBM_WIDTH_ENV, "160")
    monkeypatch.setenv(WEBM_FPS_ENV, "0")  # every frame
    outcome = await run_in_thread(runtime, lap_compare.run, lap_request({"video": upload(runtime, video)}))
    assert outcome.status == "succeeded", outcome.error
    preview = tmp_path / "preview.webm"
    preview.write_bytes(runtime.call(runtime.storage.read_all(_key(outcome, "overlay.webm"))))
    assert video_size(preview) == (160, 120)
    assert frame_count(preview) == 12
    monkeypatch.setenv(WEBM_ENV, "0")
    outcome = await run_in_thread(runtime, lap_compare.run, lap_request({"video": upload(runtime, video)}))
    assert outcome.status == "succeeded", outcome.error
    assert [a.name for a in outcome.artifacts] == ["overlay.mp4", "metrics.json", "manifest.json"]


def _key(outcome: Any, name: str) -> str:
    return str(next(a.key for a in outcome.artifacts if a.name == name))


async def test_a_square_moving_right_has_direction_zero(runtime: WorkerRuntime, tmp_path: Path) -> None:
    request = lap_request({"video": upload(runtime, square_video(tmp_path / "sq.mp4", step=2))})
    outcome = await run_in_thread(runtime, lap_compare.run, request)
    assert outcome.status == "succeeded", outcome.error
    metrics = _metrics(runtime, _key(outcome, "metrics.json"))
    moving = [f for f in metrics["video"]["frames"] if f["moving_fraction"] > 0]
    assert len(moving) >= 40
    assert abs(float(np.median([f["direction_rad"] for f in moving]))) < math.radians(5)
    assert abs(float(np.median([f["mean_magnitude"] for f in moving])) - 2.0) <= 0.3


async def test_a_faster_lap_has_a_negative_delta_against_a_slower_reference(
    runtime: WorkerRuntime, tmp_path: Path
) -> None:
    slow = lap_speeds(64)
    positions = lap_positions(slow)
    fast = np.interp(np.linspace(0, 63, 48), np.arange(64), positions)  # same path in 48 frames
    video = upload(runtime, scrolling_video(tmp_path / "fast.mp4", fast.tolist()))
    reference = upload(runtime, scrolling_video(tmp_path / "slow.mp4", positions))
    outcome = await run_in_thread(runtime, lap_compare.run, lap_request({"video": video, "reference": reference}))
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result["lap_time_delta_s"] == pytest.approx((48 - 64) / 24, abs=1e-3)
    alignment = _metrics(runtime, _key(outcome, "metrics.json"))["alignment"]
    segments = alignment["segments"]
    assert len(segments) == 10
    assert all(s["delta_s"] <= 0.05 for s in segments)
    assert segments[-1]["cumulative_delta_s"] < -0.5
    # The warping path maps reference frame j to about j * 47/63 of the faster lap.
    off = [abs(i - j * 47 / 63) for i, j in alignment["path"]]
    assert float(np.median(off)) <= 2.0


async def test_two_laps_with_a_known_offset_align_within_two_frames(runtime: WorkerRuntime, tmp_path: Path) -> None:
    positions = lap_positions(lap_speeds(56))
    late = [0.0] * 6 + positions  # the same lap, starting 6 frames later
    video = upload(runtime, scrolling_video(tmp_path / "late.mp4", late))
    reference = upload(runtime, scrolling_video(tmp_path / "ref.mp4", positions))
    outcome = await run_in_thread(runtime, lap_compare.run, lap_request({"video": video, "reference": reference}))
    assert outcome.status == "succeeded", outcome.error
    alignment = _metrics(runtime, _key(outcome, "metrics.json"))["alignment"]
    assert abs(alignment["median_offset_frames"] - 6) <= 2
    assert outcome.result["lap_time_delta_s"] == pytest.approx(6 / 24, abs=1e-3)
