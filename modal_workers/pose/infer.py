"""YOLO pose inference for the pose workload: the model, batched prediction and person tracking.

The model is loaded once per process (a container on Modal, a worker process in the local pool)
and kept. The weights are the job's ``params.model``; when that is ``None`` (the job named none),
the deployment's default ``GPURELAY_POSE_MODEL`` (tests point it at ``yolo26n-pose.yaml``, which
builds random weights from a fixed seed), else :data:`DEFAULT_MODEL`. The name is looked up in
``GPURELAY_MODEL_DIR`` (default ``/models``, where the Modal image bakes its ``.pt`` files) and
then used as given.

Batching and tracking: frames go through the network ``batch_size`` at a time (one forward pass),
and each frame's detections are then fed in order to ultralytics' ``BYTETracker``, which is
sequential by nature. ``model.track(persist=True)`` would force one frame per forward pass; this
keeps the batch and gives the same tracker the same inputs.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modal_workers.runtime.worker_runtime import PermanentError

SEED = 0
DEFAULT_MODEL = "yolo26n-pose.pt"
"""The weights of a job that names none, when the deployment sets no ``GPURELAY_POSE_MODEL``."""
"""Seed of the random weights built from a ``.yaml`` model (tests, benchmarks)."""


@dataclass(frozen=True)
class Detections:
    """One frame's people: ``boxes`` (N, 4) xyxy, ``scores`` (N,), ``keypoints`` (N, K, 3) x, y, conf."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: np.ndarray) -> Detections:
        """The detections at ``index``."""
        return Detections(self.boxes[index], self.scores[index], self.keypoints[index])

    def canonical(self) -> Detections:
        """Most confident first, equal scores ordered by box (x1, y1, x2, y2): an order set by the values.

        The model's top-k leaves the order of equal scores to the kernel, which can differ with
        the batch size or the CPU; ranks (the ids when tracking is off) and the tracker's input
        must not.
        """
        return self.take(np.lexsort((*self.boxes.T[::-1], -self.scores)))


def resolve_model(params: Any) -> str:
    """The weights to load for a job's ``PoseParams`` (see the module docstring)."""
    name = str(params.model or os.environ.get("GPURELAY_POSE_MODEL") or DEFAULT_MODEL)
    baked = Path(os.environ.get("GPURELAY_MODEL_DIR", "/models")) / name
    return str(baked) if baked.is_file() else name


def device() -> str:
    """``cuda:0`` when a GPU is present, else ``cpu``."""
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=2)
def load_model(weights: str) -> Any:
    """The YOLO pose model for ``weights``, loaded once per process (``model_unavailable`` if it cannot be)."""
    import torch

    yolo: Any = importlib.import_module("ultralytics").YOLO
    if weights.endswith((".yaml", ".yml")):
        torch.manual_seed(SEED)
    try:
        model = yolo(weights, task="pose")
    except Exception as exc:  # a missing file or a refused download
        raise PermanentError("model_unavailable", f"the pose model {weights!r} cannot be loaded: {exc}") from exc
    if model.task != "pose":
        raise PermanentError("model_unavailable", f"the model {weights!r} is not a pose model")
    return model


def predict(model: Any, frames: list[np.ndarray], *, imgsz: int, conf: float, iou: float) -> list[Detections]:
    """One forward pass over ``frames`` (a batch); each frame's people in original pixel coordinates.

    Each frame's detections come in :meth:`Detections.canonical` order.
    """
    dev = device()
    results = model.predict(
        frames,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        device=dev,
        quantize=16 if dev.startswith("cuda") else 32,
        verbose=False,
    )
    out = []
    for result in results:
        boxes = result.boxes.data.float().cpu().numpy() if result.boxes is not None else np.zeros((0, 6))
        kpts = result.keypoints
        keypoints = kpts.data.float().cpu().numpy() if kpts is not None else np.zeros((len(boxes), 0, 3))
        if keypoints.shape[-1] == 2:  # a model without keypoint confidences
            keypoints = np.concatenate([keypoints, np.ones((*keypoints.shape[:2], 1))], axis=-1)
        out.append(Detections(boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32), keypoints).canonical())
    return out


class _Boxes:
    """The view of one frame's detections that ``BYTETracker.update`` reads."""

    def __init__(self, det: Detections) -> None:
        xyxy = det.boxes.reshape(-1, 4)
        self.xyxy = xyxy
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        self.conf = det.scores
        self.cls = np.zeros(len(det), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _Boxes:
        view = object.__new__(_Boxes)
        view.xyxy, view.xywh, view.conf, view.cls = (
            self.xyxy[index],
            self.xywh[index],
            self.conf[index],
            self.cls[index],
        )
        return view


def _ensure_lap() -> None:
    """Give ultralytics' tracker a ``lap`` module when the package is missing (no install offline).

    The stand-in solves the assignment with ultralytics' own ``linear_sum_assignment`` and keeps
    pairs within ``cost_limit``: the tracker's documented fallback (``use_lap=False``). Images that
    can install ``lap`` (the Modal image) use the real one.
    """
    try:
        import lap  # noqa: F401

        return
    except ImportError:
        pass

    def lapjv(cost: np.ndarray, extend_cost: bool = True, cost_limit: float = np.inf) -> tuple[float, Any, Any]:
        solve: Any = importlib.import_module("ultralytics.utils.ops").linear_sum_assignment
        x, y = -np.ones(cost.shape[0], dtype=int), -np.ones(cost.shape[1], dtype=int)
        rows, cols = solve(cost)
        total = 0.0
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= cost_limit:
                x[r], y[c], total = c, r, total + float(cost[r, c])
        return total, x, y

    module = types.ModuleType("lap")
    module.__version__ = "0-stand-in"  # type: ignore[attr-defined]
    module.lapjv = lapjv  # type: ignore[attr-defined]
    sys.modules["lap"] = module


class PersonTracker:
    """Ultralytics' ByteTrack over per-frame detections: gives each tracked person a stable id."""

    def __init__(self, config: str = "bytetrack.yaml") -> None:
        _ensure_lap()
        tracker: Any = importlib.import_module("ultralytics.trackers.byte_tracker").BYTETracker
        utils: Any = importlib.import_module("ultralytics.utils")
        check_yaml: Any = importlib.import_module("ultralytics.utils.checks").check_yaml
        self._tracker = tracker(utils.IterableSimpleNamespace(**utils.YAML.load(check_yaml(config))))

    def update(self, det: Detections, frame: np.ndarray | None = None) -> tuple[Detections, np.ndarray]:
        """Feed one frame; the tracked detections (tracker-smoothed boxes) and their ids."""
        tracks = self._tracker.update(_Boxes(det), frame)
        if len(tracks) == 0:
            return det.take(np.zeros(0, dtype=int)), np.zeros(0, dtype=int)
        index = tracks[:, -1].astype(int)
        kept = det.take(index)
        boxes = tracks[:, :4].astype(np.float32)
        return Detections(boxes, kept.scores, kept.keypoints), tracks[:, 4].astype(int)


def untracked_ids(det: Detections) -> np.ndarray:
    """Ids when tracking is off: the detection's rank in its frame (0 = the most confident)."""
    return np.arange(len(det), dtype=int)
