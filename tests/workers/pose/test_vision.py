"""Court detection, shuttle tracking and analytics of the pose workload against drawn ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from modal_workers.pose.analytics import player_analytics
from modal_workers.pose.court import COURT_CORNERS_M, detect_court, to_court
from modal_workers.pose.shuttle import ShuttleTracker
from modal_workers.pose.synth import COURT_LINES_M, court_image, draw_dot, project, shuttle_path


def _line_error(found: list[dict[str, float]], ends: np.ndarray) -> float:
    """Distance of the true segment's ends from the nearest detected line (as an infinite line)."""
    best = np.inf
    for ln in found:
        p, q = np.array([ln["x1"], ln["y1"]]), np.array([ln["x2"], ln["y2"]])
        d = (q - p) / np.linalg.norm(q - p)
        normal = np.array([-d[1], d[0]])
        best = min(best, float(np.abs((ends - p) @ normal).max()))
    return best


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1280, 720)])
def test_court_lines_and_homography(width: int, height: int) -> None:
    image, view = court_image(width, height)
    court = detect_court(image)
    assert court["found"]
    for a, b in COURT_LINES_M:
        assert _line_error(court["lines"], project(view, np.array([a, b]))) <= 3.0, (a, b)
    true_corners = project(view, COURT_CORNERS_M)
    found_corners = np.array([[c["x"], c["y"]] for c in court["corners"]])
    assert np.abs(found_corners - true_corners).max() <= 3.0
    mapped = to_court(court["homography"], true_corners)
    assert np.hypot(*(mapped - COURT_CORNERS_M).T).max() <= 0.05
    # A point in the middle of the court maps to the middle too.
    centre = to_court(court["homography"], project(view, np.array([[3.05, 6.7]])))
    assert np.hypot(*(centre[0] - [3.05, 6.7])) <= 0.05


def test_no_court_in_a_plain_frame() -> None:
    court = detect_court(np.full((240, 320, 3), 90, np.uint8))
    assert not court["found"]
    assert court["homography"] is None
    assert court["corners"] is None


@pytest.mark.parametrize(("width", "height", "frames"), [(320, 240, 40), (640, 480, 60)])
def test_shuttle_tracked_within_3px(width: int, height: int, frames: int) -> None:
    court, _ = court_image(width, height)
    truth = shuttle_path(frames, width, height)
    tracker = ShuttleTracker(width, height)
    hits = 0
    for i in range(frames):
        frame = court.copy()
        draw_dot(frame, truth[i])
        found = tracker.update(frame)
        hits += found is not None and float(np.hypot(found[0] - truth[i][0], found[1] - truth[i][1])) <= 3.0
    assert hits >= 0.9 * frames


def test_shuttle_gap_where_unseen() -> None:
    court, _ = court_image(320, 240)
    truth = shuttle_path(30, 320, 240)
    tracker = ShuttleTracker(320, 240)
    seen = []
    for i in range(30):
        frame = court.copy()
        if not 12 <= i < 16:  # hidden for four frames
            draw_dot(frame, truth[i])
        seen.append(tracker.update(frame))
    assert all(p is None for p in seen[12:16])
    assert seen[20] is not None
    assert np.hypot(seen[20][0] - truth[20][0], seen[20][1] - truth[20][1]) <= 3.0


def _walk(xs: np.ndarray, y: float) -> list[dict[str, object]]:
    return [{"frame": i, "box": [x - 10, y - 60, x + 10, y], "keypoints": []} for i, x in enumerate(xs)]


def test_analytics_in_metres_with_a_homography() -> None:
    _, view = court_image(640, 480)
    # Walk 3 m along the near baseline's side of the net in 30 frames at 10 fps (1 m/s).
    ground = project(view, np.stack([np.linspace(1.0, 4.0, 31), np.full(31, 10.0)], axis=1))
    frames = _walk(ground[:, 0], 0.0)
    for f, (_, gy) in zip(frames, ground, strict=True):
        box = f["box"]
        assert isinstance(box, list)
        box[1], box[3] = gy - 60, gy
    stats = player_analytics(frames, 10.0, np.linalg.inv(view), 480)
    assert stats["unit"] == "m"
    assert stats["distance"] == pytest.approx(3.0, abs=0.1)
    assert stats["averageSpeed"] == pytest.approx(1.0, abs=0.05)
    assert set(stats["timeInHalf"]) == {"near"}


def test_analytics_in_pixels_without_a_homography() -> None:
    stats = player_analytics(_walk(np.linspace(0, 100, 21), 50.0), 20.0, None, 240)
    assert stats["unit"] == "px"
    assert stats["speedUnit"] == "px/s"
    assert stats["distance"] == pytest.approx(100.0, abs=1.0)
    assert stats["averageSpeed"] == pytest.approx(100.0, abs=2.0)
    assert stats["timeInHalf"] == {"top": pytest.approx(21 / 20)}
