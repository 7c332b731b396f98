"""The ``pose`` workload: YOLO pose on a sports video (the Badminton tracker's GPU job).

Pipeline, three threads: :class:`~modal_workers.media.video.FrameReader` decodes ahead into a bounded
queue; this thread runs the model on ``params.batch_size`` frames per forward pass (CUDA when
present), then feeds each frame in order to ByteTrack (player ids), the shuttle tracker and, until
it is found, court detection; :class:`~modal_workers.pose.video.FrameWriter` draws and encodes the
processed video behind another bounded queue. Progress is reported after every batch.

Artifacts: ``processed.mp4`` (skeletons, ids, shuttle trail, court lines), ``processed.webm``
(the same video as a VP8 preview browsers play, downscaled and subsampled; not
written when ``GPURELAY_VIDEO_WEBM=0``, see :mod:`modal_workers.media.video_out`), ``results.json`` (the
Badminton tracker's shape: ``duration``, ``fps``, ``totalFrames``, ``processedFrames``,
``videoWidth``, ``videoHeight``, ``players``, ``shuttle``, ``courtDetection``, plus ``analytics``)
and ``manifest.json``. The job result is ``results.json`` without the per-frame lists, so the
``job.succeeded`` event stays small whatever the video's length.

Settings (environment): ``GPURELAY_POSE_MODEL`` (default weights when the job names none),
``GPURELAY_MODEL_DIR`` (where baked weights live, default ``/models``),
``GPURELAY_POSE_MAX_DURATION_S`` (longest video accepted, default 3600).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from modal_workers.runtime.worker_runtime import WorkerContext

T = TypeVar("T")
VERSION = "1"
"""Version of the pose workload's output (in the manifest)."""


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def max_duration_s() -> float:
    """The longest video a pose job accepts, in seconds."""
    return float(os.environ.get("GPURELAY_POSE_MAX_DURATION_S", "3600"))


def run(spec: Any, ctx: WorkerContext) -> dict[str, Any]:
    """Run a ``PoseSpec`` job: inference, tracking, shuttle, court, analytics, artifacts."""
    from modal_workers.media.video import FrameReader, probe, sampled_count
    from modal_workers.media.video_out import WEBM_TYPE, preview_settings
    from modal_workers.pose import infer as pose_infer
    from modal_workers.pose.render import draw
    from modal_workers.pose.results import Collector, summary
    from modal_workers.pose.video import FrameWriter

    params = spec.params
    timings: dict[str, float] = {}
    started = time.perf_counter()
    info = probe(ctx.input_path("video"), max_duration_s=max_duration_s())
    sample_fps = info.fps / params.vid_stride if params.vid_stride > 1 else None
    expected = max(1, sampled_count(info.frames, info.fps, sample_fps))
    ctx.progress(0.01, "loading the pose model")
    weights = pose_infer.resolve_model(params)
    model = pose_infer.load_model(weights)
    device = pose_infer.device()
    timings["setup_s"] = time.perf_counter() - started
    ctx.log(f"pose: {weights} on {device}, batch {params.batch_size}, imgsz {params.imgsz}")

    out_path = ctx.work_dir / "processed.mp4"
    infer_s = 0.0
    loop_start = time.perf_counter()
    with FrameReader(info, sample_fps=sample_fps, max_duration_s=max_duration_s()) as reader:
        width, height = reader.size
        collector = Collector(width, height, info.fps, track=params.track)
        bounds = preview_settings()
        preview = ctx.work_dir / "processed.webm" if bounds else None
        writer = FrameWriter(out_path, reader.fps, (width, height), draw, preview, bounds)
        try:
            for batch in batched(reader, params.batch_size):
                ctx.check_cancelled()
                t0 = time.perf_counter()
                dets = pose_infer.predict(
                    model, [f.image for f in batch], imgsz=params.imgsz, conf=params.conf, iou=params.iou
                )
                infer_s += time.perf_counter() - t0
                for frame, det in zip(batch, dets, strict=True):
                    writer.submit(frame.image, collector.add(frame.index, frame.time_s, frame.image, det))
                done = len(collector.frames)
                ctx.progress(0.02 + 0.88 * min(1.0, done / expected), f"inference: {done}/{expected} frames")
        except BaseException:
            writer.abort()
            raise
        ctx.progress(0.9, "encoding the processed video")
        writer.close()
        total_frames = reader.decoded
    timings["pipeline_s"] = time.perf_counter() - loop_start
    timings["inference_s"] = infer_s

    result = collector.result(total_frames, info.fps)
    ctx.progress(0.95, "uploading artifacts")
    ctx.artifact("processed.mp4", out_path, "video/mp4")
    if writer.webm is not None:
        ctx.artifact("processed.webm", writer.webm, WEBM_TYPE)
    ctx.artifact("results.json", json.dumps(result, separators=(",", ":")).encode(), "application/json")
    timings["total_s"] = time.perf_counter() - started
    manifest = {
        "kind": "pose",
        "version": VERSION,
        "artifacts": {
            "processed.mp4": {"frames": writer.written, "fps": reader.fps, "width": width, "height": height},
            **_preview(writer),
            "results.json": {"schema": "badminton-tracker"},
        },
        "params": params.model_dump(mode="json"),
        "model": {"weights": weights, "device": device},
        "frames": {"total": total_frames, "processed": result["processedFrames"], "expected": expected},
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "fps": round(result["processedFrames"] / timings["pipeline_s"], 3) if timings["pipeline_s"] else None,
        "versions": _versions(),
    }
    ctx.artifact("manifest.json", json.dumps(manifest, indent=2).encode(), "application/json")
    ctx.progress(1.0, "done")
    return summary(result)


def _preview(writer: Any) -> dict[str, Any]:
    """The manifest's entry for the WebM preview (none when it was not written)."""
    if writer.webm is None or writer.webm_size is None:
        return {}
    w, h = writer.webm_size
    return {"processed.webm": {"fps": writer.webm_fps, "width": w, "height": h, "codec": "vp8"}}


def _versions() -> dict[str, str]:
    import cv2
    import numpy
    import torch
    import ultralytics

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }
