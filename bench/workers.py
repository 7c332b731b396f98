"""Worker benchmarks: pose frames/s through the platform against a naive per-frame ultralytics loop.

Both sides decode the same synthetic clip and run the same model (``yolo26n-pose.yaml``, random
weights: speed does not depend on what is found) at the same ``imgsz``, on CUDA when present:

* ``pose pipeline``: the workload's inference path: frames decoded ahead by the reader thread,
  ``batch_size`` frames per forward pass, each frame then fed to ByteTrack, against the naive loop
  (``cv2.VideoCapture`` → ``model.predict(frame)`` → ByteTrack, one frame at a time). Target ratio ≥ 1.
* ``pose job``: the whole job through :class:`~modal_workers.runtime.WorkerRuntime` (events to a
  null sink, artifacts to local storage): inference plus shuttle, court, drawing and encoding of
  ``processed.mp4`` and the artifacts, against the same naive loop (no target: it does more work).
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
NOTES = [
    "pose: yolo26n-pose built from its yaml (random weights; throughput does not depend on detections), "
    f"{FRAMES} frames of {WIDTH}x{HEIGHT}, imgsz {IMGSZ}, batch {BATCH}; on this machine's CPU unless a GPU "
    "is present. The pipeline figure's target is its baseline (ratio ≥ 1.0)."
]


def _env() -> None:
    root = Path(__file__).resolve().parent.parent / ".gpurelay-test"
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "yolo"))
    os.environ.setdefault("GPURELAY_POSE_MODEL", MODEL)


def naive(model: Any, path: Path) -> float:
    """Frames/s of the per-frame loop: read, predict one frame, track."""
    import cv2

    from modal_workers.pose_infer import PersonTracker, predict

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
    from modal_workers.pose import batched
    from modal_workers.pose_infer import PersonTracker, predict
    from modal_workers.video import FrameReader, probe

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
    async def send(self, subject_event: str, event: Any) -> None:
        """Drop the event."""


async def _null_sink() -> _NullSink:
    return _NullSink()


def job(path: Path, folder: Path) -> float:
    """Frames/s of a whole pose job through the worker runtime."""
    from modal_workers.pose import run as pose_run
    from modal_workers.runtime import RunRequest, WorkerRuntime
    from services.common.storage import LocalStorage, upload_key

    storage = LocalStorage(folder / "blobs", "http://127.0.0.1:1", b"bench-secret-0123456789abcdef0123")
    runtime = WorkerRuntime(_null_sink, lambda: storage)
    try:
        runtime.call(storage.put(upload_key("", "bench", "upbench", path.name), path.read_bytes(), "video/mp4"))
        spec = {"kind": "pose", "inputs": {"video": {"upload_id": "upbench"}},
                "params": {"imgsz": IMGSZ, "batch_size": BATCH}}  # fmt: skip
        request = RunRequest(tenant="bench", job_id="jbench", kind="pose", attempt=1, spec=spec,
                             function="modal_workers.pose:run")  # fmt: skip
        start = time.perf_counter()
        outcome = runtime.run(pose_run, request)
        elapsed = time.perf_counter() - start
    finally:
        runtime.close()
    if outcome.status != "succeeded":
        raise RuntimeError(f"the pose job failed: {outcome.error}")
    return rate(int(outcome.result["processedFrames"]), elapsed)


def pose_results() -> list[Result]:
    """Pose figures (on CUDA when present, else CPU)."""
    _env()
    from modal_workers.pose_infer import device, load_model
    from modal_workers.pose_synth import write_video

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


def run() -> list[Result]:
    """Every worker figure."""
    return pose_results()


if __name__ == "__main__":
    from bench.common import format_table

    print(format_table(run()))
