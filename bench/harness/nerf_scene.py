"""A synthetic scene for the NeRF pipeline: textured boxes on a textured base plate, seen from a ring.

Rendered with OpenCV (no GL): each box face that faces the camera is its texture warped by the
face's homography (sharp, high-contrast shapes drawn by OpenCV: SIFT needs them, smooth or
low-contrast synthetic texture does not register), shaded by a fixed light, painted far to near,
at twice the size and area-averaged down so edges and alpha are anti-aliased. Around the plate the views are transparent
(alpha 0). Cameras are OpenCV-style (x right, y down, z forward) on a ring looking at the scene's
centre; :func:`ring_cameras` gives their exact poses, which the tests compare COLMAP's with.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FOCAL = 640, 480, 560.0
BOXES = (  # (min corner, max corner): the plate, then the objects on it
    ((-1.6, -1.6, -0.12), (1.6, 1.6, 0.0)),
    ((-0.9, -0.7, 0.0), (-0.1, 0.2, 0.75)),
    ((0.2, -0.2, 0.0), (0.95, 0.75, 0.5)),
    ((-0.35, -1.25, 0.0), (0.45, -0.55, 0.35)),
)
TEXTURE_SIZE = 640
TEXELS_PER_UNIT = 180.0
LIGHT = np.array([0.4, -0.3, 0.87])


@dataclass(frozen=True)
class View:
    """One camera: world→camera rotation ``r`` and translation ``t`` (x_cam = r x_world + t)."""

    r: np.ndarray
    t: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """The camera centre in world coordinates."""
        return np.asarray(-self.r.T @ self.t)


UP = np.array([0.0, 0.0, 1.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = UP) -> View:
    """The OpenCV camera at ``eye`` looking at ``target`` (image y down, world ``up`` up)."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    r = np.stack([right, down, forward])
    return View(r=r, t=-r @ eye)


def ring_cameras(count: int = 16, radius: float = 4.2, height: float = 2.4) -> list[View]:
    """``count`` cameras evenly on a horizontal ring around the scene, looking at its centre."""
    target = np.array([0.0, 0.0, 0.2])
    angles = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
    return [look_at(np.array([radius * np.cos(a), radius * np.sin(a), height]), target) for a in angles]


def _texture(seed: int) -> np.ndarray:
    """A sharp, high-contrast texture: many random filled shapes in saturated colours."""
    rng = np.random.default_rng(seed)
    image = np.full((TEXTURE_SIZE, TEXTURE_SIZE, 3), rng.integers(0, 80, 3), np.uint8)
    for _ in range(420):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, TEXTURE_SIZE, 2))
        size = int(rng.integers(6, 34))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), size // 2, colour, -1)
        else:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(6, 34))), colour, -1)
    return image


TEXTURES = [_texture(seed) for seed in range(len(BOXES))]


def _faces(low: np.ndarray, high: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The six faces of a box: four corners (in texture order) and the outward normal."""
    faces = []
    for axis in range(3):
        u_axis, v_axis = [a for a in range(3) if a != axis]
        for side, value in ((-1.0, low[axis]), (1.0, high[axis])):
            corners = []
            for u, v in ((low[u_axis], low[v_axis]), (high[u_axis], low[v_axis]),
                         (high[u_axis], high[v_axis]), (low[u_axis], high[v_axis])):  # fmt: skip
                point = np.zeros(3)
                point[axis], point[u_axis], point[v_axis] = value, u, v
                corners.append(point)
            normal = np.zeros(3)
            normal[axis] = side
            faces.append((np.array(corners), normal))
    return faces


def _draw_box(canvas: np.ndarray, index: int, view: View, k: np.ndarray) -> None:
    """Paint box ``index``'s faces that face the camera over ``canvas`` (premultiplied RGBA, float)."""
    low, high = (np.array(c) for c in BOXES[index])
    height, width = canvas.shape[:2]
    for face, (corners, normal) in enumerate(_faces(low, high)):
        if normal @ (corners.mean(axis=0) - view.centre) >= 0:
            continue  # facing away
        cam = corners @ view.r.T + view.t
        image = (cam @ k.T)[:, :2] / cam[:, 2:]
        axis = int(np.argmax(np.abs(normal)))
        u_axis, v_axis = [a for a in range(3) if a != axis]
        extent = (high - low)[[u_axis, v_axis]] * TEXELS_PER_UNIT
        origin = np.array([(37 * face) % 64, (53 * face) % 64], np.float64)
        texel = origin + np.array([[0, 0], [extent[0], 0], extent, [0, extent[1]]])
        x0, y0 = np.floor(image.min(axis=0)).astype(int).clip(0, (width, height))
        x1, y1 = np.ceil(image.max(axis=0) + 1).astype(int).clip(0, (width, height))
        if x1 <= x0 or y1 <= y0:
            continue
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)  # warp into the face's box only
        h = shift @ cv2.getPerspectiveTransform(texel.astype(np.float32), image.astype(np.float32))
        light = 0.55 + 0.45 * max(0.0, float(normal @ LIGHT / np.linalg.norm(LIGHT)))
        size = (int(x1 - x0), int(y1 - y0))
        colour = cv2.warpPerspective(TEXTURES[index], h, size, flags=cv2.INTER_LINEAR).astype(np.float32)
        mask = np.zeros(TEXTURES[index].shape[:2], np.float32)
        u0, v0 = int(origin[0]), int(origin[1])
        mask[v0 : v0 + int(extent[1]), u0 : u0 + int(extent[0])] = 1.0
        cover = cv2.warpPerspective(mask, h, size, flags=cv2.INTER_LINEAR)[..., None]
        box = canvas[y0:y1, x0:x1]
        box *= 1.0 - cover
        box[..., :3] += colour * light * cover
        box[..., 3:] += 255.0 * cover


def render_view(view: View, width: int = WIDTH, height: int = HEIGHT, samples: int = 2) -> np.ndarray:
    """The RGBA image (uint8, transparent around the scene) of ``view``: faces warped from their
    textures, far boxes first (the plate is below every object, the objects do not overlap), drawn at
    ``samples`` × the size and area-averaged down."""
    scale = samples * width / WIDTH
    k = np.array([[FOCAL * scale, 0, width * samples / 2], [0, FOCAL * scale, height * samples / 2], [0, 0, 1]])
    canvas = np.zeros((height * samples, width * samples, 4), np.float32)
    distance = [np.linalg.norm((np.array(lo) + np.array(hi)) / 2 - view.centre) for lo, hi in BOXES[1:]]
    for index in [0, *(1 + i for i in np.argsort(distance)[::-1])]:
        _draw_box(canvas, int(index), view, k)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    alpha = small[..., 3:]
    rgb = np.where(alpha > 0.5, small[..., :3] * 255.0 / np.maximum(alpha, 1e-6), 0)  # un-premultiply
    return np.concatenate([np.clip(rgb, 0, 255), np.clip(alpha, 0, 255)], -1).round().astype(np.uint8)


def png_bytes(rgba: np.ndarray) -> bytes:
    """An RGBA image as PNG bytes (OpenCV writes BGRA)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert ok
    return data.tobytes()


def scene_views(count: int = 16, width: int = WIDTH, height: int = HEIGHT) -> tuple[list[View], list[bytes]]:
    """The ring's cameras and their RGBA PNGs."""
    views = ring_cameras(count)
    return views, [png_bytes(render_view(v, width, height)) for v in views]


def scene_zip(pngs: list[bytes], path: Path | None = None) -> bytes:
    """The views as a zip of ``view_00.png``…, as a user uploads them (also written to ``path``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, data in enumerate(pngs):
            archive.writestr(f"photos/view_{index:02d}.png", data)
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``(s, R, t)`` that best maps ``source`` points onto ``target`` (least squares)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(b.T @ a / len(source))
    sign = np.eye(3)
    sign[2, 2] = np.sign(np.linalg.det(u @ vt))
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / (a**2).sum(1).mean())
    return scale, rotation, mu_t - scale * rotation @ mu_s
