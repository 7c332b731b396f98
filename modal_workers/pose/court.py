"""Badminton court detection: white lines → Canny → HoughLinesP → line clusters → corners → homography.

Thin bright structures are isolated with a morphological top-hat (so large bright areas such as
walls or shirts drop out), edges found with Canny and segments with the probabilistic Hough
transform. Segments are clustered into lines by angle and offset (both edges of a painted line
join one cluster) and each cluster is refitted through points along its segments. The outermost
near-horizontal pair (baselines) and the outermost steep pair (doubles sidelines) bound the court;
their intersections are the corners, mapped to the standard court (6.1 m × 13.4 m) by
``cv2.findHomography``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

COURT_WIDTH_M = 6.1
COURT_LENGTH_M = 13.4
COURT_CORNERS_M = np.array(
    [[0.0, 0.0], [COURT_WIDTH_M, 0.0], [COURT_WIDTH_M, COURT_LENGTH_M], [0.0, COURT_LENGTH_M]], dtype=np.float64
)
"""Court corners in metres: far-left, far-right, near-right, near-left (the image's top is far)."""
ANGLE_TOL_DEG = 3.0


@dataclass(frozen=True)
class Line:
    """An infinite image line through ``point`` along unit ``direction``, with its visible extent."""

    point: np.ndarray
    direction: np.ndarray
    ends: tuple[tuple[float, float], tuple[float, float]]
    support: float

    def distance(self, xy: np.ndarray) -> np.ndarray:
        """Perpendicular pixel distance from points ``xy`` (N, 2) to this line."""
        normal = np.array([-self.direction[1], self.direction[0]])
        return np.asarray(np.abs((np.asarray(xy, dtype=np.float64) - self.point) @ normal))

    @property
    def horizontal(self) -> bool:
        """Whether the line is nearer horizontal than vertical in the image."""
        return bool(abs(self.direction[0]) >= abs(self.direction[1]))


def _line_mask(gray: np.ndarray) -> np.ndarray:
    k = max(15, min(gray.shape[:2]) // 25) | 1
    tophat = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    return np.asarray(tophat)


def _segments(tophat: np.ndarray) -> np.ndarray:
    size = min(tophat.shape[:2])
    edges = cv2.Canny(tophat, 40, 120)
    found = cv2.HoughLinesP(edges, 1, np.pi / 360, threshold=max(20, size // 12),
                            minLineLength=max(15, size // 10), maxLineGap=max(5, size // 60))  # fmt: skip
    return np.zeros((0, 4)) if found is None else found.reshape(-1, 4).astype(np.float64)


def _cluster(segments: np.ndarray, offset_tol: float) -> list[Line]:
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    clusters: list[list[int]] = []
    keys: list[tuple[float, float]] = []
    for i in np.argsort(-lengths):
        x1, y1, x2, y2 = segments[i]
        theta = np.arctan2(y2 - y1, x2 - x1) % np.pi
        rho = -np.sin(theta) * x1 + np.cos(theta) * y1
        for c, (t, r) in enumerate(keys):
            dt = min(abs(theta - t), np.pi - abs(theta - t))
            mid = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
            off = abs(-np.sin(t) * mid[0] + np.cos(t) * mid[1] - r)
            if np.degrees(dt) < ANGLE_TOL_DEG and off < offset_tol:
                clusters[c].append(i)
                break
        else:
            clusters.append([i])
            keys.append((theta, rho))
    return [_fit(segments[idx]) for idx in clusters]


def _fit(segs: np.ndarray) -> Line:
    points = []
    for x1, y1, x2, y2 in segs:
        n = max(2, int(np.hypot(x2 - x1, y2 - y1)))
        points.append(np.linspace([x1, y1], [x2, y2], n))
    return _fit_points(np.concatenate(points).astype(np.float32))


def _fit_points(pts: np.ndarray) -> Line:
    vx, vy, x0, y0 = cv2.fitLine(pts, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    direction = np.array([vx, vy], dtype=np.float64)
    point = np.array([x0, y0], dtype=np.float64)
    t = (pts - point) @ direction
    ends = tuple(tuple(float(v) for v in point + direction * s) for s in (t.min(), t.max()))
    return Line(point, direction, ends, float(t.max() - t.min()))  # type: ignore[arg-type]


def _refine(line: Line, pts: np.ndarray, weights: np.ndarray, others: list[Line], band: float) -> Line:
    """Refit ``line`` through the centre of its painted pixels (intensity-weighted), crossings left out."""
    t = (pts - line.point) @ line.direction
    lo, hi = sorted(float((np.array(e) - line.point) @ line.direction) for e in line.ends)
    near = (line.distance(pts) <= band) & (t >= lo - band) & (t <= hi + band)
    for other in others:
        if abs(other.direction @ line.direction) < np.cos(np.radians(20)):  # a crossing line
            near &= other.distance(pts) > band
    if near.sum() < 10:
        return line
    p, w = pts[near], weights[near]
    centre = (p * w[:, None]).sum(0) / w.sum()
    cov = ((p - centre) * w[:, None]).T @ (p - centre)
    direction = np.linalg.eigh(cov)[1][:, -1]
    ts = (p - centre) @ direction
    ends = tuple(tuple(float(v) for v in centre + direction * s) for s in (ts.min(), ts.max()))
    return Line(centre, direction, ends, float(ts.max() - ts.min()))  # type: ignore[arg-type]


def _dedupe(lines: list[Line], tol: float) -> list[Line]:
    kept: list[Line] = []
    for line in sorted(lines, key=lambda ln: -ln.support):
        ends = np.array(line.ends)
        if not any(
            abs(k.direction @ line.direction) > np.cos(np.radians(ANGLE_TOL_DEG)) and k.distance(ends).max() < tol
            for k in kept
        ):
            kept.append(line)
    return kept


def find_lines(gray: np.ndarray) -> list[Line]:
    """The court's painted lines in a gray frame, each refitted through its centre."""
    tophat = _line_mask(gray)
    size = min(gray.shape[:2])
    tol = max(6.0, size / 80)
    clusters = [ln for ln in _cluster(_segments(tophat), offset_tol=tol) if ln.support >= size / 8]
    ys, xs = np.nonzero(tophat > max(20, int(tophat.max()) // 5))
    pts, weights = np.stack([xs, ys], axis=1).astype(np.float64), tophat[ys, xs].astype(np.float64)
    refined = [_refine(ln, pts, weights, clusters, band=tol) for ln in clusters]
    return _dedupe(refined, tol)


def intersect(a: Line, b: Line) -> np.ndarray | None:
    """Where two lines cross (``None`` when parallel)."""
    m = np.array([a.direction, -b.direction]).T
    if abs(np.linalg.det(m)) < 1e-9:
        return None
    s, _ = np.linalg.solve(m, b.point - a.point)
    return np.asarray(a.point + s * a.direction)


def detect_court(frame: np.ndarray, min_area_fraction: float = 0.05) -> dict[str, Any]:
    """``courtDetection`` for one BGR (or gray) frame: lines, corners and homography when found."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height, width = gray.shape[:2]
    lines = find_lines(gray)
    out: dict[str, Any] = {
        "found": False,
        "lines": [{"x1": e[0][0], "y1": e[0][1], "x2": e[1][0], "y2": e[1][1]} for e in (ln.ends for ln in lines)],
        "corners": None,
        "homography": None,
        "courtSize": {"width": COURT_WIDTH_M, "length": COURT_LENGTH_M, "unit": "m"},
    }
    flat = [ln for ln in lines if ln.horizontal]
    steep = [ln for ln in lines if not ln.horizontal]
    if len(flat) < 2 or len(steep) < 2:
        return out
    at_x = np.array([width / 2, 0.0])
    heights = [float(ln.point[1] + (at_x[0] - ln.point[0]) * ln.direction[1] / ln.direction[0]) for ln in flat]
    xs = [float(ln.point[0] + (height / 2 - ln.point[1]) * ln.direction[0] / ln.direction[1]) for ln in steep]
    far, near = flat[int(np.argmin(heights))], flat[int(np.argmax(heights))]
    left, right = steep[int(np.argmin(xs))], steep[int(np.argmax(xs))]
    corners = [intersect(far, left), intersect(far, right), intersect(near, right), intersect(near, left)]
    if any(c is None for c in corners):
        return out
    quad = np.array(corners, dtype=np.float64)
    area = cv2.contourArea(quad.astype(np.float32))
    if not cv2.isContourConvex(quad.astype(np.float32)) or area < min_area_fraction * width * height:
        return out
    homography, _ = cv2.findHomography(quad, COURT_CORNERS_M)
    if homography is None:
        return out
    out.update(
        found=True,
        corners=[{"x": float(x), "y": float(y)} for x, y in quad],
        homography=homography.tolist(),
        boundary={"far": _ends(far), "near": _ends(near), "left": _ends(left), "right": _ends(right)},
    )
    return out


def _ends(line: Line) -> dict[str, float]:
    (x1, y1), (x2, y2) = line.ends
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2}


def to_court(homography: Any, points: np.ndarray) -> np.ndarray:
    """Image points (N, 2) → court metres (N, 2) through ``homography`` (3 × 3, nested lists or array)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    return np.asarray(cv2.perspectiveTransform(pts, np.asarray(homography, dtype=np.float64))).reshape(-1, 2)
