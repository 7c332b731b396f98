"""Training data of the NeRF: posed RGBA views from ``transforms.json`` and the photos, in the scene box.

Each registered photo is undistorted (its radial and tangential terms), shrunk by ``downscale`` and
given an alpha: its own alpha channel when it has one, else a mask of what differs from the plain
background colour (``params.background``, or the median of the photo's border). Poses are moved
into the scene box ``[-1, 1]³``: the sparse points' centre at the origin, their radius × :data:`MARGIN`
at 1. :func:`turntable_rig` gives the render stage the cameras' mean elevation and distance around
that centre, and the up direction (the mean of the cameras' up axes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from modal_workers.nerf.archive import Photo, read_rgba

MARGIN = 1.6
"""The scene box's half size in sparse-point radii (the points' 5th–95th percentiles miss the edges)."""
HOLD_OUT_EVERY = 8


@dataclass(frozen=True)
class PosedView:
    """One view: camera-to-world (3×4, OpenGL axes, scene box units), intrinsics, RGBA in 0..1."""

    c2w: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    rgba: np.ndarray


def background_alpha(rgb: np.ndarray, background: tuple[int, int, int] | None) -> np.ndarray:
    """Alpha (0..1) of a photo without one: 0 at the background colour (given, else the border's median)."""
    if background is None:
        band = max(1, min(rgb.shape[:2]) // 50)
        border = np.concatenate(
            [
                rgb[:band].reshape(-1, 3),
                rgb[-band:].reshape(-1, 3),
                rgb[:, :band].reshape(-1, 3),
                rgb[:, -band:].reshape(-1, 3),
            ]
        )
        colour = np.median(border, axis=0)
    else:
        colour = np.array(background, np.float64)
    distance = np.linalg.norm(rgb.astype(np.float64) - colour, axis=-1)
    alpha = np.clip((distance - 18.0) / 24.0, 0.0, 1.0).astype(np.float32)
    return cv2.morphologyEx(alpha, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))


def scene_transform(document: dict[str, Any]) -> tuple[np.ndarray, float]:
    """``(centre, scale)``: a COLMAP point ``p`` is at ``(p - centre) / scale`` in the scene box."""
    scene = document["gpurelay_scene"]
    return np.asarray(scene["center"], np.float64), max(float(scene["radius"]) * MARGIN, 1e-9)


def load_views(
    document: dict[str, Any], photos: list[Photo], downscale: int, background: tuple[int, int, int] | None
) -> list[PosedView]:
    """Every frame of ``transforms.json`` with its photo, in the scene box, shrunk by ``downscale``."""
    by_name = {f"images/{p.name}": p for p in photos}
    centre, scale = scene_transform(document)
    views = []
    for frame in document["frames"]:
        image = read_rgba(by_name[frame["file_path"]].path)
        k = np.array([[frame["fl_x"], 0, frame["cx"]], [0, frame["fl_y"], frame["cy"]], [0, 0, 1]])
        distortion = np.array([frame.get(n, 0.0) for n in ("k1", "k2", "p1", "p2")])
        if np.abs(distortion).max() > 1e-7:
            image = cv2.undistort(image, k, distortion)
        if image.shape[2] == 3:
            image = np.concatenate([image, (background_alpha(image, background) * 255).astype(np.uint8)[..., None]], -1)
        size = (max(1, image.shape[1] // downscale), max(1, image.shape[0] // downscale))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        c2w = np.asarray(frame["transform_matrix"], np.float64)[:3]
        c2w = np.concatenate([c2w[:, :3], ((c2w[:, 3] - centre) / scale)[:, None]], 1)
        sx, sy = size[0] / image.shape[1], size[1] / image.shape[0]
        views.append(PosedView(c2w, frame["fl_x"] * sx, frame["fl_y"] * sy, frame["cx"] * sx, frame["cy"] * sy, small))
    return views


def split(views: list[PosedView]) -> tuple[list[PosedView], list[PosedView]]:
    """``(training, held out)``: every :data:`HOLD_OUT_EVERY`-th view is held out for PSNR."""
    held = [v for i, v in enumerate(views) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY // 2]
    return [v for v in views if not any(v is h for h in held)], held


def view_rays(
    c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float, w: int, h: int
) -> tuple[np.ndarray, np.ndarray]:
    """Origins and directions (h·w, 3) of every pixel's centre (OpenGL camera: y up, looking down -z)."""
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    cam = np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], -1).reshape(-1, 3)
    dirs = cam @ c2w[:, :3].T
    return np.broadcast_to(c2w[:, 3], dirs.shape).copy(), dirs


def turntable_rig(views: list[PosedView]) -> dict[str, Any]:
    """The render stage's orbit: up axis, first azimuth, mean elevation (rad), distance and focal/width."""
    centres = np.array([v.c2w[:, 3] for v in views])
    up = np.mean([v.c2w[:, 1] for v in views], axis=0)
    up /= np.linalg.norm(up)
    distances = np.linalg.norm(centres, axis=1)
    elevations = np.arcsin(np.clip(centres @ up / distances, -1, 1))
    first = centres[0] - (centres[0] @ up) * up
    return {
        "up": up.tolist(),
        "first": (first / max(np.linalg.norm(first), 1e-9)).tolist(),
        "elevation": float(elevations.mean()),
        "distance": float(distances.mean()),
        "focal_over_width": float(np.mean([v.fx / v.rgba.shape[1] for v in views])),
    }
