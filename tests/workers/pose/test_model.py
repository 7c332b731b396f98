"""The pose model path: weights resolution, batched inference, determinism and ByteTrack ids.

Random weights (``yolo26n-pose.yaml``, fixed seed) with a tiny ``conf`` give a hundred candidate
people per frame (hundreds with ``conf=0``), so keypoint comparisons have real numbers to disagree on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from contracts.specs.jobs import PoseParams, PoseSpec, parse_job_spec
from modal_workers.pose.infer import Detections, PersonTracker, load_model, predict, resolve_model
from modal_workers.pose.synth import signal_preserving, write_video
from modal_workers.pose.workload import batched
from tests.workers.pose.support import CONF, MARGIN, assert_same_people, match_people, people

YAML = "yolo26n-pose.yaml"
POSE_BODY = {"kind": "pose", "inputs": {"video": {"upload_id": "up1"}}}


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The synthetic clip's 16 decoded frames."""
    path = write_video(tmp_path_factory.mktemp("pose") / "clip.mp4", frames=16)
    cap = cv2.VideoCapture(str(path))
    out = []
    while (read := cap.read())[0]:
        out.append(read[1])
    cap.release()
    return out


@pytest.fixture(scope="module")
def sensitive_model() -> Any:
    """The yaml model with He-initialised convolutions: its output depends on the image."""
    return signal_preserving(load_model.__wrapped__(YAML))


def _run(model: Any, frames: list[np.ndarray], batch_size: int, conf: float = CONF) -> list[Detections]:
    return [d for b in batched(frames, batch_size) for d in predict(model, b, imgsz=160, conf=conf, iou=0.7)]


def test_the_threshold_keeps_a_set_that_float_noise_cannot_change(
    frames: list[np.ndarray], sensitive_model: Any
) -> None:
    """Why the batch comparisons below can compare sets: no score lies near ``CONF``."""
    for det in _run(sensitive_model, frames, 8, conf=0.0):
        kept = det.scores > CONF
        assert 10 < kept.sum() < len(det)
        assert det.scores[kept].min() >= MARGIN * CONF
        assert det.scores[~kept].max() <= CONF / MARGIN


def test_batch_sizes_1_and_8_give_the_same_people(frames: list[np.ndarray], sensitive_model: Any) -> None:
    one, eight = _run(sensitive_model, frames, 1), _run(sensitive_model, frames, 8)
    assert len(one) == len(eight) == len(frames)
    for index, (a, b) in enumerate(zip(one, eight, strict=True)):
        assert len(a) > 10
        assert a.keypoints.shape == (len(a), 17, 3)
        assert a.boxes.shape == (len(a), 4)
        rows, cols = assert_same_people(people(a.boxes, a.keypoints), people(b.boxes, b.keypoints), 1e-3,
                                        where=f"frame {index}")  # fmt: skip
        np.testing.assert_allclose(a.scores[rows], b.scores[cols], rtol=1e-4, atol=0)
    # The comparison can fail: a different image gives different people.
    other = _run(sensitive_model, [cv2.flip(frames[0], 1)], 1)[0]
    assert match_people(people(one[0].boxes, one[0].keypoints), people(other.boxes, other.keypoints), 1e-3)[2] > 0


def test_equal_scores_come_in_box_order(frames: list[np.ndarray], sensitive_model: Any) -> None:
    """Ranks are the ids when tracking is off: an order set by the values, whatever the batch."""
    ties = 0
    for batch_size in (1, 8):
        for det in _run(sensitive_model, frames, batch_size, conf=0.0):
            for i in range(len(det) - 1):
                assert det.scores[i] >= det.scores[i + 1]
                if det.scores[i] == det.scores[i + 1]:
                    ties += 1
                    assert tuple(det.boxes[i].tolist()) <= tuple(det.boxes[i + 1].tolist()), (i, det.boxes[i : i + 2])
    assert ties > 0  # the clip has equal scores to order


def test_yaml_weights_are_deterministic() -> None:
    first, second = load_model.__wrapped__(YAML), load_model.__wrapped__(YAML)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].cpu().numpy(), b[k].cpu().numpy()) for k in a)


def test_weights_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GPURELAY_MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("GPURELAY_POSE_MODEL", raising=False)
    assert resolve_model(PoseParams()) == "yolo26n-pose.pt"
    (tmp_path / "custom-pose.pt").write_bytes(b"weights")
    assert resolve_model(PoseParams(model="custom-pose.pt")) == str(tmp_path / "custom-pose.pt")
    monkeypatch.setenv("GPURELAY_POSE_MODEL", YAML)
    assert resolve_model(PoseParams()) == YAML  # the setting when the job names no model
    assert resolve_model(PoseParams(model="custom-pose.pt")) == str(tmp_path / "custom-pose.pt")
    # A spec travels as JSON with every field written out (job record, RunRequest): still unnamed.
    forwarded = PoseSpec.model_validate_json(parse_job_spec(POSE_BODY).model_dump_json())
    assert isinstance(forwarded, PoseSpec)
    assert resolve_model(forwarded.params) == YAML
    monkeypatch.setenv("GPURELAY_POSE_MODEL", "custom-pose.pt")  # a default name is looked up like a job's
    assert resolve_model(forwarded.params) == str(tmp_path / "custom-pose.pt")


def _person(x: float, y: float, score: float) -> tuple[np.ndarray, float, np.ndarray]:
    box = np.array([x - 15, y - 40, x + 15, y + 40], dtype=np.float32)
    kpts = np.tile(np.array([[x, y, 0.9]], dtype=np.float32), (17, 1))
    return box, score, kpts


def test_tracker_keeps_each_player_id() -> None:
    tracker = PersonTracker()
    rng = np.random.default_rng(0)
    seen: dict[str, set[int]] = {"left": set(), "right": set()}
    for i in range(30):
        people = {"left": _person(60 + 2 * i, 120, 0.9), "right": _person(260 - 2 * i, 140, 0.85)}
        order = list(people)
        rng.shuffle(order)  # detection order must not matter
        det = Detections(
            np.stack([people[n][0] for n in order]),
            np.array([people[n][1] for n in order], dtype=np.float32),
            np.stack([people[n][2] for n in order]),
        )
        tracked, ids = tracker.update(det)
        for box, track_id in zip(tracked.boxes, ids, strict=True):
            centre = (box[0] + box[2]) / 2
            name = min(people, key=lambda n: abs(float(people[n][0][0] + 15) - centre))
            seen[name].add(int(track_id))
    assert len(seen["left"]) == 1
    assert len(seen["right"]) == 1
    assert seen["left"] != seen["right"]


def test_collector_builds_players_in_the_tracker_shape() -> None:
    from modal_workers.pose.results import Collector, summary
    from modal_workers.pose.synth import court_image

    image, _ = court_image(320, 240)
    collector = Collector(320, 240, fps=10.0)
    for i in range(12):
        box, score, kpts = _person(100 + 3 * i, 150, 0.9)
        collector.add(i, i / 10, image, Detections(box[None], np.array([score], np.float32), kpts[None]))
    result = collector.result(total_frames=12, source_fps=10.0)
    assert result["processedFrames"] == 12
    assert result["courtDetection"]["found"]
    assert len(result["players"]) == 1
    player = next(iter(result["players"].values()))
    assert [f["frame"] for f in player["frames"]] == list(range(12))
    entry = player["frames"][0]
    assert set(entry) == {"frame", "time", "box", "confidence", "keypoints"}
    assert len(entry["keypoints"]) == 17
    assert player["analytics"]["unit"] == "m"
    assert player["analytics"]["distance"] > 0
    small = summary(result)
    assert small["players"][str(player["id"])]["frameCount"] == 12
    assert "frames" not in small["players"][str(player["id"])]


def test_missing_weights_fail_permanently(tmp_path: Path) -> None:
    from modal_workers.runtime.worker_runtime import PermanentError

    with pytest.raises(PermanentError) as caught:
        load_model.__wrapped__(str(tmp_path / "missing-pose.pt"))
    assert caught.value.code == "model_unavailable"
