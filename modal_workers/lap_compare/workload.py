"""lap_compare: dense optical flow on one or two lap videos.

Inputs ``video`` (the lap to analyse) and optional ``reference`` (a second lap). Each is probed
(bad files fail with ``invalid_video``, ``empty_video``, ``truncated_video`` or
``video_too_long``), decoded in a reader thread overlapped with the flow computation
(:class:`~modal_workers.media.video.FrameReader`), downscaled to ``params.downscale_width`` and sampled
at ``params.fps_sample``; flow is Farnebäck or DIS (``params.flow_method``); the overlay is
drawn and encoded in a writer thread (:class:`~modal_workers.lap_compare.flow.OverlayWriter`).

Artifacts, in this order: ``overlay.mp4`` (the analysed lap with its flow drawn over it, one
frame per processed frame, ``mp4v``), ``overlay.webm`` (the same video as a VP8 preview browsers
play, downscaled and subsampled; not written when ``GPURELAY_VIDEO_WEBM=0``, see
:mod:`modal_workers.media.video_out`), ``metrics.json`` (per-frame metrics, see
:mod:`modal_workers.lap_compare.flow`, and with a reference the DTW alignment of
:mod:`modal_workers.lap_compare.align`), ``manifest.json`` (artifacts with size and sha256,
parameters, versions, timings). The result summarises frames, fps, duration, mean speed and,
with two laps, the lap time delta (negative: the analysed lap is faster).
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from contracts.specs.job_params import LapCompareParams
from contracts.specs.jobs import LapCompareSpec
from modal_workers.lap_compare.align import align
from modal_workers.lap_compare.flow import FlowEngine, OverlayWriter, frame_metrics, summarize
from modal_workers.media.video import FrameReader, VideoInfo, probe, sampled_count
from modal_workers.media.video_out import WEBM_TYPE, Preview, Renditions, preview_settings
from modal_workers.runtime.worker_runtime import PermanentError, WorkerContext

VERSION = "1.0"
OVERLAY_FOURCC = "mp4v"


def run(spec: LapCompareSpec, ctx: WorkerContext) -> dict[str, Any]:
    """The workload: analyse ``video`` (and ``reference``), store the three artifacts."""
    params = spec.params
    timings: dict[str, float] = {}
    started = time.perf_counter()
    ctx.progress(0.0, "downloading")
    names = ["video"] + (["reference"] if spec.inputs.reference is not None else [])
    paths = {name: ctx.input_path(name) for name in names}
    timings["download_s"] = time.perf_counter() - started
    infos = {name: probe(path, params.max_duration_s) for name, path in paths.items()}
    ctx.log("; ".join(f"{n}: {i.frames} frames, {i.fps:.2f} fps, {i.width}x{i.height}" for n, i in infos.items()))
    total = sum(max(1, sampled_count(i.frames, i.fps, params.fps_sample)) for i in infos.values())
    laps: dict[str, dict[str, Any]] = {}
    done = 0
    overlay = ctx.work_dir / "overlay.mp4"
    bounds = preview_settings()
    preview = ctx.work_dir / "overlay.webm" if bounds else None
    for name in names:
        t0 = time.perf_counter()
        videos = (overlay, preview, bounds) if name == "video" else (None, None, None)
        laps[name] = analyse(infos[name], params, ctx, videos[0], done, total, videos[1], videos[2])
        done += laps[name]["summary"]["frames"]
        timings[f"flow_{name}_s"] = time.perf_counter() - t0
    metrics: dict[str, Any] = {"version": VERSION, "units": "processed pixels; speed in px/s", **laps}
    if "reference" in laps:
        v, r = laps["video"], laps["reference"]
        speeds = [np.array([f["speed"] for f in lap["frames"]]) for lap in (v, r)]
        metrics["alignment"] = align(speeds[0], speeds[1], v["summary"]["fps"], r["summary"]["fps"])
    ctx.progress(0.95, "uploading artifacts")
    metrics_path = ctx.work_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, separators=(",", ":")))
    t0 = time.perf_counter()
    stored = [ctx.artifact("overlay.mp4", overlay, "video/mp4")]
    if preview is not None:
        stored.append(ctx.artifact("overlay.webm", preview, WEBM_TYPE))
    stored.append(ctx.artifact("metrics.json", metrics_path))
    timings["upload_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    result = _result(laps, metrics.get("alignment"), params)
    manifest = {
        "version": VERSION,
        "job_id": ctx.request.job_id,
        "attempt": ctx.attempt,
        "artifacts": [
            a.model_dump(mode="json", include={"name", "key", "content_type", "size", "sha256"}) for a in stored
        ],
        "inputs": {
            n: {"frames": i.frames, "fps": i.fps, "width": i.width, "height": i.height} for n, i in infos.items()
        },
        "parameters": params.model_dump(mode="json"),
        "versions": _versions(),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "result": result,
    }
    ctx.artifact("manifest.json", json.dumps(manifest, indent=2).encode(), "application/json")
    return result  # job.succeeded follows the artifacts: it is the 100 %


def analyse(
    info: VideoInfo,
    params: LapCompareParams,
    ctx: WorkerContext,
    overlay: Path | None,
    done: int,
    total: int,
    webm: Path | None = None,
    bounds: Preview | None = None,
) -> dict[str, Any]:
    """Per-frame flow metrics of one lap (and its overlay video when ``overlay`` is a path, with a
    WebM preview of it within ``bounds`` when ``webm`` is one too)."""
    engine = FlowEngine(params.flow_method)
    frames: list[dict[str, Any]] = []
    width, fps_sample, limit = params.downscale_width, params.fps_sample, params.max_duration_s
    previous = None
    with FrameReader(info, width=width, sample_fps=fps_sample, max_duration_s=limit) as reader:
        writer = (
            OverlayWriter(Renditions(overlay, reader.fps, reader.size, OVERLAY_FOURCC, webm, bounds))
            if overlay
            else None
        )
        try:
            for frame in reader:
                ctx.check_cancelled()
                gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
                flow = engine(previous, gray) if previous is not None else None
                if writer is not None:
                    writer.write(frame.image, flow)
                metrics = frame_metrics(flow, reader.fps)
                frames.append({"index": frame.index, "time_s": round(frame.time_s, 5), **metrics})
                previous = gray
                ctx.progress(0.9 * (done + len(frames)) / max(total, 1), f"{len(frames)} frames")
        except BaseException:
            if writer is not None:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    writer.close()
            raise
        if writer is not None:
            writer.close()
    if len(frames) < 2:
        raise PermanentError("empty_video", "The video needs at least two frames (after sampling) to measure motion.")
    return {"frames": frames, "summary": summarize(frames, reader.fps) | {"decoded_frames": reader.decoded}}


def _result(
    laps: dict[str, dict[str, Any]], alignment: dict[str, Any] | None, params: LapCompareParams
) -> dict[str, Any]:
    summary = laps["video"]["summary"]
    result: dict[str, Any] = {
        "frames": summary["frames"],
        "fps": summary["fps"],
        "duration_s": summary["duration_s"],
        "mean_speed": summary["mean_speed"],
        "mean_magnitude": summary["mean_magnitude"],
        "flow_method": params.flow_method,
    }
    if alignment is not None:
        result["reference_frames"] = laps["reference"]["summary"]["frames"]
        result["reference_duration_s"] = laps["reference"]["summary"]["duration_s"]
        result["lap_time_delta_s"] = alignment["lap_time_delta_s"]
    return result


def _versions() -> dict[str, str]:
    return {
        "lap_compare": VERSION,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
