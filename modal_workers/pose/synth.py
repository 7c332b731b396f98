"""Synthetic inputs for the pose workload's tests and benchmark: a court in perspective, a moving dot.

Everything is drawn with OpenCV from known geometry, so detections can be checked against ground
truth: :func:`court_view` returns the image→pixel transform of the court plane, :func:`shuttle_path`
the dot's true position per frame. :func:`signal_preserving` makes a random-weights model's output
depend on its input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from modal_workers.pose.court import COURT_LENGTH_M, COURT_WIDTH_M

# Painted lines in court metres: ((x1, y1), (x2, y2)); y = 0 is the far baseline.
COURT_LINES_M: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = (
    ((0.0, 0.0), (6.1, 0.0)),  # far baseline
    ((0.0, 13.4), (6.1, 13.4)),  # near baseline
    ((0.0, 0.0), (0.0, 13.4)),  # left doubles sideline
    ((6.1, 0.0), (6.1, 13.4)),  # right doubles sideline
    ((0.46, 0.0), (0.46, 13.4)),  # left singles sideline
    ((5.64, 0.0), (5.64, 13.4)),  # right singles sideline
    ((0.0, 0.76), (6.1, 0.76)),  # far doubles long service line
    ((0.0, 12.64), (6.1, 12.64)),  # near doubles long service line
    ((0.0, 4.72), (6.1, 4.72)),  # far short service line
    ((0.0, 8.68), (6.1, 8.68)),  # near short service line
    ((3.05, 0.0), (3.05, 4.72)),  # far centre line
    ((3.05, 8.68), (3.05, 13.4)),  # near centre line
)


def court_view(width: int = 640, height: int = 480) -> np.ndarray:
    """A plausible broadcast view: the 3 × 3 homography from court metres to image pixels."""
    src = np.array([[0, 0], [COURT_WIDTH_M, 0], [COURT_WIDTH_M, COURT_LENGTH_M], [0, COURT_LENGTH_M]], np.float32)
    dst = np.array(
        [[0.33 * width, 0.17 * height], [0.67 * width, 0.17 * height], [0.86 * width, 0.9 * height],
         [0.14 * width, 0.9 * height]], np.float32,
    )  # fmt: skip
    return np.asarray(cv2.getPerspectiveTransform(src, dst), dtype=np.float64)


def project(view: np.ndarray, points_m: np.ndarray) -> np.ndarray:
    """Court metres (N, 2) → image pixels (N, 2)."""
    pts = np.asarray(points_m, dtype=np.float64).reshape(-1, 1, 2)
    return np.asarray(cv2.perspectiveTransform(pts, view)).reshape(-1, 2)


def court_image(width: int = 640, height: int = 480, thickness: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """A green court with white lines (``thickness`` metres) in perspective, and its metres→pixels view.

    Drawn top-down at 100 px/m and warped, so lines thin with distance as in a real view.
    """
    scale, margin = 100.0, 150
    top = np.zeros((int(COURT_LENGTH_M * scale) + 2 * margin, int(COURT_WIDTH_M * scale) + 2 * margin, 3), np.uint8)
    top[:] = (60, 120, 40)
    for (x1, y1), (x2, y2) in COURT_LINES_M:
        p1 = (round(x1 * scale + margin), round(y1 * scale + margin))
        p2 = (round(x2 * scale + margin), round(y2 * scale + margin))
        cv2.line(top, p1, p2, (235, 235, 235), max(1, round(thickness * scale)), cv2.LINE_AA)
    to_top = np.array([[scale, 0, margin], [0, scale, margin], [0, 0, 1]], dtype=np.float64)
    view = court_view(width, height)
    warp = view @ np.linalg.inv(to_top)
    image = cv2.warpPerspective(top, warp, (width, height), flags=cv2.INTER_AREA, borderValue=(60, 120, 40))
    return image, view


def shuttle_path(frames: int, width: int, height: int) -> np.ndarray:
    """The dot's true (x, y) per frame: a fast parabolic arc across the frame."""
    t = np.linspace(0.0, 1.0, frames)
    x = 0.12 * width + 0.76 * width * t
    y = 0.75 * height - 1.6 * height * t * (1 - t)
    return np.stack([x, y], axis=1)


def draw_dot(frame: np.ndarray, xy: np.ndarray, radius: int = 3) -> None:
    """Draw a bright anti-aliased dot centred (sub-pixel) at ``xy``."""
    shift = 4
    centre = (round(xy[0] * (1 << shift)), round(xy[1] * (1 << shift)))
    cv2.circle(frame, centre, radius << shift, (255, 255, 255), -1, cv2.LINE_AA, shift)


def signal_preserving(model: Any, seed: int = 1) -> Any:
    """``model`` (a YOLO built from its yaml) with He-initialised convolutions, in place; returned.

    A freshly built model loses its input's signal on the way through the network (every image
    gives the same output), so comparisons of outputs would prove nothing; after this, different
    images give different keypoints.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return model


def write_video(path: Path, frames: int = 24, width: int = 320, height: int = 240, fps: float = 25.0) -> Path:
    """A match-like clip: the court, two stick figures walking and a shuttle arc (MPEG-4)."""
    court, _ = court_image(width, height)
    path_xy = shuttle_path(frames, width, height)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    for i in range(frames):
        frame = court.copy()
        for base_x, base_y, step in ((0.35, 0.35, 1.0), (0.6, 0.8, -1.5)):
            x, y = int(width * base_x + step * i), int(height * base_y)
            cv2.circle(frame, (x, y - 30), 6, (200, 180, 160), -1)
            cv2.line(frame, (x, y - 24), (x, y), (40, 40, 200), 4)
            cv2.line(frame, (x, y), (x - 8, y + 18), (40, 40, 40), 3)
            cv2.line(frame, (x, y), (x + 8, y + 18), (40, 40, 40), 3)
        draw_dot(frame, path_xy[i])
        writer.write(frame)
    writer.release()
    return path
