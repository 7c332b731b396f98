"""Worker benchmarks: pose and lap_compare frames/s through the platform against naive loops.

Both sides decode the same synthetic clip and run the same model (``yolo26n-pose.yaml``, random
weights: speed does not depend on what is found) at the same ``imgsz``, on CUDA when present:

* ``pose pipeline``: the workload's inference path: frames decoded ahead by the reader thread,
  ``batch_size`` frames per forward pass, each frame then fed to ByteTrack, against the naive loop
  (``cv2.VideoCapture`` → ``model.predict(frame)`` → ByteTrack, one frame at a time). Target ratio ≥ 1.
* ``pose job``: the whole job through :class:`~modal_workers.runtime.worker_runtime.WorkerRuntime` (events to a
  null sink, artifacts to local storage): inference plus shuttle, court, drawing and encoding of
  ``processed.mp4`` and the artifacts, against the same naive loop (no target: it does more work).

lap_compare (:func:`lap_results`): the whole job through the runtime (download, probe, decode
overlapped in the reader thread, downscale, Farnebäck flow and metrics, overlay drawn and encoded
in the writer thread with its VP8 WebM preview, the four artifacts stored) against a plain OpenCV loop doing the same
per-frame computation one step after another (``cv2.VideoCapture`` → resize → gray → Farnebäck →
metrics → overlay drawn → ``VideoWriter``), with no artifacts. Target ratio ≥ 0.9.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, median, rate

FRAMES = int(os.environ.get("BENCH_POSE_FRAMES", "64"))
WIDTH, HEIGHT = 640, 360
IMGSZ = int(os.environ.get("BENCH_POSE_IMGSZ", "320"))
BATCH = int(os.environ.get("BENCH_POSE_BATCH", "16"))
MODEL = "yolo26n-pose.yaml"
REPEATS = 3
LAP_FRAMES = int(os.environ.get("BENCH_LAP_FRAMES", "48"))
LAP_SOURCE = (1280, 720)
LAP_WIDTH = int(os.environ.get("BENCH_LAP_WIDTH", "640"))
LAP_RATIO = 0.9
NOTES = [
    "pose: yolo26n-pose built from its yaml (random weights; throughput does not depend on detections), "
    f"{FRAMES} frames of {WIDTH}x{HEIGHT}, imgsz {IMGSZ}, batch {BATCH}; on this machine's CPU unless a GPU "
    "is present. The pipeline figure's target is its baseline (ratio ≥ 1.0).",
    f"lap_compare: {LAP_FRAMES} frames of a synthetic {LAP_SOURCE[0]}x{LAP_SOURCE[1]} lap (mp4v), downscaled "
    f"to width {LAP_WIDTH}, Farnebäck; the job (all artifacts stored, its 320 px 12 frames/s WebM preview "
    "included) against a sequential OpenCV loop doing the same per-frame work (mp4 only); "
    f"target ratio ≥ {LAP_RATIO}.",
]


def _env() -> None:
    root = Path(__file__).resolve().parent.parent / ".gpurelay-test"
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "yolo"))
    os.environ.setdefault("GPURELAY_POSE_MODEL", MODEL)


def naive(model: Any, path: Path) -> float:
    """Frames/s of the per-frame loop: read, predict one frame, track."""
    import cv2

    from modal_workers.pose.infer import PersonTracker, predict

    tracker, count = PersonTracker(), 0
    start = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    while (read := cap.read())[0]:
        tracker.update(predict(model, [read[1]], imgsz=IMGSZ, conf=0.25, iou=0.7)[0], read[1])
        count += 1
    cap.release()
    return rate(count, time.perf_counter() - start)


def pipeline(model: Any, path: Path) -> float:
    """Frames/s of the workload's inference path: overlapped decode, batched predict, tracking."""
    from modal_workers.media.video import FrameReader, probe
    from modal_workers.pose.infer import PersonTracker, predict
    from modal_workers.pose.workload import batched

    tracker, count = PersonTracker(), 0
    start = time.perf_counter()
    with FrameReader(probe(path)) as reader:
        for batch in batched(reader, BATCH):
            dets = predict(model, [f.image for f in batch], imgsz=IMGSZ, conf=0.25, iou=0.7)
            for frame, det in zip(batch, dets, strict=True):
                tracker.update(det, frame.image)
                count += 1
    return rate(count, time.perf_counter() - start)


class _NullSink:
    async def send(self, subject_event: str, event: Any, *, dispatched_seq: int = 0) -> None:
        """Drop the event."""


async def _null_sink() -> _NullSink:
    return _NullSink()


def through_runtime(path: Path, folder: Path, kind: str, params: dict[str, Any], workload: Any) -> tuple[Any, float]:
    """Run one ``kind`` job on ``path`` through the worker runtime; its outcome and wall time."""
    from contracts.runs import RunRequest
    from modal_workers.runtime.worker_runtime import WorkerRuntime
    from services.common.storage import LocalStorage, upload_key

    storage = LocalStorage(folder / "blobs", "http://127.0.0.1:1", b"bench-secret-0123456789abcdef0123")
    runtime = WorkerRuntime(_null_sink, lambda: storage)
    try:
        runtime.call(storage.put(upload_key("", "bench", "upbench", path.name), path.read_bytes(), "video/mp4"))
        spec = {"kind": kind, "inputs": {"video": {"upload_id": "upbench"}}, "params": params}
        request = RunRequest(tenant="bench", job_id="jbench", kind=kind, attempt=1, spec=spec,
                             function=f"modal_workers.{kind}:run")  # fmt: skip
        start = time.perf_counter()
        outcome = runtime.run(workload, request)
        elapsed = time.perf_counter() - start
    finally:
        runtime.close()
    if outcome.status != "succeeded":
        raise RuntimeError(f"the {kind} job failed: {outcome.error}")
    return outcome, elapsed


def job(path: Path, folder: Path) -> float:
    """Frames/s of a whole pose job through the worker runtime."""
    from modal_workers.pose.workload import run as pose_run

    outcome, elapsed = through_runtime(path, folder, "pose", {"imgsz": IMGSZ, "batch_size": BATCH}, pose_run)
    return rate(int(outcome.result["processedFrames"]), elapsed)


def pose_results() -> list[Result]:
    """Pose figures (on CUDA when present, else CPU)."""
    _env()
    from modal_workers.pose.infer import device, load_model
    from modal_workers.pose.synth import write_video

    where = "CUDA" if device().startswith("cuda") else "CPU"
    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-pose-") as tmp:
        folder = Path(tmp)
        path = write_video(folder / "clip.mp4", frames=FRAMES, width=WIDTH, height=HEIGHT)
        model = load_model(MODEL)
        naive(model, path)  # warm-up: predictor set-up, first kernels
        pipeline(model, path)
        base, ours, whole = [], [], []
        for _ in range(REPEATS):
            base.append(naive(model, path))
            ours.append(pipeline(model, path))
            whole.append(job(path, folder))
    unit = "frames/s"
    return [
        Result.compare(f"pose pipeline fps ({where}, batch {BATCH})", median(ours), unit, median(base), median(base)),
        Result.compare(f"pose job fps, all outputs ({where})", median(whole), unit, median(base)),
    ]


def lap_clip(path: Path) -> Path:
    """A synthetic lap: a smooth texture scrolling 4 px per frame with a car drawn on it (mp4v, 24 fps)."""
    import cv2
    import numpy as np

    width, height = LAP_SOURCE
    noise = np.random.default_rng(3).integers(0, 255, (height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    smooth = cv2.GaussianBlur(cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC), (5, 5), 1.0)
    base = cv2.cvtColor(smooth, cv2.COLOR_GRAY2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 24.0, (width, height))
    for k in range(LAP_FRAMES):
        frame = np.roll(base, 4 * k, axis=1)
        x = 100 + 8 * k % (width - 200)
        cv2.rectangle(frame, (x, height // 2 - 20), (x + 60, height // 2 + 20), (30, 30, 230), -1)
        writer.write(frame)
    writer.release()
    return path


def lap_naive(path: Path, out: Path) -> float:
    """Frames/s of the plain OpenCV loop: read, downscale, gray, Farnebäck, metrics, draw, encode."""
    import cv2

    from modal_workers.lap_compare.flow import FlowEngine, draw_overlay, frame_metrics
    from modal_workers.media.video import scaled_size

    engine, previous, count = FlowEngine("farneback"), None, 0
    start = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    size = scaled_size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), LAP_WIDTH)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    while (read := cap.read())[0]:
        image = cv2.resize(read[1], size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        flow = engine(previous, gray) if previous is not None else None
        frame_metrics(flow, fps)
        writer.write(draw_overlay(image, flow))
        previous, count = gray, count + 1
    cap.release()
    writer.release()
    return rate(count, time.perf_counter() - start)


def lap_job(path: Path, folder: Path) -> float:
    """Frames/s of a whole lap_compare job through the worker runtime."""
    from modal_workers.lap_compare.workload import run as lap_run

    outcome, elapsed = through_runtime(path, folder, "lap_compare", {"downscale_width": LAP_WIDTH}, lap_run)
    return rate(int(outcome.result["frames"]), elapsed)


def lap_results() -> list[Result]:
    """lap_compare figures (CPU: OpenCV's Farnebäck)."""
    import modal_workers.lap_compare.workload  # noqa: F401 - imported before any clock starts

    with tempfile.TemporaryDirectory(prefix="gpurelay-bench-lap-") as tmp:
        folder = Path(tmp)
        path = lap_clip(folder / "lap.mp4")
        lap_naive(path, folder / "naive.mp4")  # warm-up: codecs, OpenCV's thread pool
        base, ours = [], []
        for _ in range(REPEATS):
            base.append(lap_naive(path, folder / "naive.mp4"))
            ours.append(lap_job(path, folder))
    baseline = median(base)
    name = f"lap_compare job fps ({LAP_WIDTH} px wide, Farnebäck)"
    return [Result.compare(name, median(ours), "frames/s", baseline, LAP_RATIO * baseline)]


def run() -> list[Result]:
    """Every worker figure."""
    return pose_results() + lap_results()


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
